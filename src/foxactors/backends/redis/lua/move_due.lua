-- KEYS: delayed set, then the streams of the queue's priority levels, highest first.
-- ARGV: how many at most, maxlen ("" for none), the place (from 1) of the level of
--       entries without a priority, then the lowest priority of each level, in order.
-- Moves due entries into the stream of their priority's level.
-- Returns {moved, ms until the next one is due (-1: none waiting)}.
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local levels, default = #KEYS - 1, tonumber(ARGV[3])
for _, member in ipairs(due) do
  local fields = cmsgpack.unpack(member)
  table.remove(fields, 1)
  local level, priority = default, nil
  for i = 1, #fields, 2 do
    if fields[i] == 'priority' then priority = tonumber(fields[i + 1]) end
  end
  if priority then
    level = levels
    for j = 1, levels do
      if priority >= tonumber(ARGV[3 + j]) then level = j break end
    end
  end
  local stream = KEYS[1 + level]
  if ARGV[2] ~= '' then
    redis.call('XADD', stream, 'MAXLEN', '~', ARGV[2], '*', unpack(fields))
  else
    redis.call('XADD', stream, '*', unpack(fields))
  end
  redis.call('ZREM', KEYS[1], member)
end
local next = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #next == 0 then return {#due, -1} end
return {#due, math.max(0, tonumber(next[2]) - now)}
