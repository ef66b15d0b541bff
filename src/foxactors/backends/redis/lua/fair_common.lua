-- Fair queues: what every fair script shares (prepended to each; see redis/_fair.py).
-- KEYS[1..5] of every fair script: ring (list of active tenants), turn (hash: tenant
-- -> slots left in its turn; a tenant is in the ring iff it is here), out (hash:
-- tenant -> deliveries out; ':ready' -> entries in the lists), conf (hash: 'dw', 'w:<t>' weights, 'l', 'l:<t>' limits,
-- '' for none), wake (a stream consumers block on). ARGV[1]: the prefix of the
-- tenants' lists (the list of tenant t is prefix .. t; '' is the no-tenant's).
-- The steps are those of DeficitRoundRobin in backends/_fair.py.
local RING, TURN, OUT, CONF, WAKE, LISTS = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[1]

local function weight(t)
  local w = redis.call('HGET', CONF, 'w:' .. t)
  if not w then w = redis.call('HGET', CONF, 'dw') end
  return tonumber(w) or 1
end

local function room(t)
  local l = redis.call('HGET', CONF, 'l:' .. t)
  if not l then l = redis.call('HGET', CONF, 'l') end
  if not l or l == '' then return true end
  return tonumber(redis.call('HGET', OUT, t) or '0') < tonumber(l)
end

local function activate(t)  -- join the back of the ring unless in it
  if redis.call('HSETNX', TURN, t, 0) == 1 then redis.call('RPUSH', RING, t) end
end

local function wake()
  redis.call('XADD', WAKE, 'MAXLEN', '~', 100, '*', 'w', '1')
end

local function release(t)  -- a delivery of t was settled: its slot is free
  if redis.call('HINCRBY', OUT, t, -1) <= 0 then redis.call('HDEL', OUT, t) end
  if redis.call('HEXISTS', TURN, t) == 0 and redis.call('LLEN', LISTS .. t) > 0
      and room(t) then
    activate(t)
    wake()
  end
end

local function tenant_of(flat)
  for i = 1, #flat, 2 do
    if flat[i] == 'x-tenant' then return flat[i + 1] end
  end
  return ''
end
