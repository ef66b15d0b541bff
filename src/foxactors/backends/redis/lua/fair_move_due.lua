-- KEYS: the five fair keys, then the delayed set. ARGV: lists prefix, how many at most.
-- move_due.lua for a fair queue: due entries go to the back of their tenants' lists.
-- Returns {moved, ms until the next one is due (-1: none waiting)}.
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[6], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  local fields = cmsgpack.unpack(member)
  table.remove(fields, 1)
  local t = tenant_of(fields)
  redis.call('RPUSH', LISTS .. t, cmsgpack.pack(fields))
  redis.call('HINCRBY', OUT, ':ready', 1)
  if room(t) then activate(t) end
  redis.call('ZREM', KEYS[6], member)
end
if #due > 0 then wake() end
local next = redis.call('ZRANGE', KEYS[6], 0, 0, 'WITHSCORES')
if #next == 0 then return {#due, -1} end
return {#due, math.max(0, tonumber(next[2]) - now)}
