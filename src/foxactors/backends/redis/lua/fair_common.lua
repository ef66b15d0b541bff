-- Fair queues: what every fair script shares (prepended to each; see redis/_fair.py).
-- KEYS[1..5] of every fair script: ring (list of active tenants), turn (hash: tenant
-- -> slots left in its turn; a tenant is in the ring iff it is here), out (hash:
-- tenant -> slots held; ':ready' -> entries in the lists), conf (hash: 'dw', 'w:<t>'
-- weights, 'l', 'l:<t>' limits, '' for none; 'same' when no tenant has its own;
-- 'track' when some tenant has a limit), wake
-- (a stream consumers block on). ARGV[1]: the prefix of the tenants' lists (the list
-- of tenant t is prefix .. t; '' is the no-tenant's). A tenant whose list ran dry may
-- stay in the ring until it is next at its head.
-- Slots: an entry moved into the stream holds one of its tenant's slots (counted in
-- out) only where something needs the count: a limit, or a dedicated consumer's
-- choice. Such an entry carries the field x-slot, so whoever settles it, whenever,
-- frees the slot; an entry without it frees nothing.
-- The steps are those of DeficitRoundRobin in backends/_fair.py.
local RING, TURN, OUT, CONF, WAKE, LISTS = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[1]

-- weights and limits do not change while a script runs: each is read once a run
local weights, limits, defaults = {}, {}, nil

local function defaults_of()  -- read once a run: weight, limit, 'same', 'track'
  if not defaults then defaults = redis.call('HMGET', CONF, 'dw', 'l', 'same', 'track') end
  return defaults
end

local function conf_of(t)  -- read t's weight and limit
  local d = defaults_of()
  local w, l = d[1], d[2]
  if not d[3] then  -- some tenants have weights or limits of their own
    local own = redis.call('HMGET', CONF, 'w:' .. t, 'l:' .. t)
    w, l = own[1] or w, own[2] or l
  end
  weights[t] = tonumber(w) or 1
  limits[t] = l and tonumber(l) or false  -- false: none ('' or unset)
end

local function weight(t)
  if weights[t] == nil then
    if defaults_of()[3] then return tonumber(defaults[1]) or 1 end  -- all alike
    conf_of(t)
  end
  return weights[t]
end

local function limit_of(t)  -- false: none
  if limits[t] == nil then
    if defaults_of()[3] then  -- all alike
      local l = defaults[2]
      return l and tonumber(l) or false
    end
    conf_of(t)
  end
  return limits[t]
end

local function tracking()  -- whether a limit needs every tenant's slots counted
  return defaults_of()[4] ~= false
end

local function out_of(t)
  return tonumber(redis.call('HGET', OUT, t) or '0')
end

local function room(t)
  local l = limit_of(t)
  return not l or out_of(t) < l
end

local function activate(t)  -- join the back of the ring unless in it
  if redis.call('HSETNX', TURN, t, 0) == 1 then redis.call('RPUSH', RING, t) end
end

local function wake()
  redis.call('XADD', WAKE, 'MAXLEN', '~', 100, '*', 'w', '1')
end

local function release(t, n)  -- n (1 if nil) slots of t were settled: free them
  if redis.call('HINCRBY', OUT, t, -(n or 1)) <= 0 then redis.call('HDEL', OUT, t) end
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

local function slot_of(flat)  -- the tenant whose slot entry fields flat hold, or nil
  for i = 1, #flat, 2 do
    if flat[i] == 'x-slot' then return tenant_of(flat) end
  end
  return nil
end
