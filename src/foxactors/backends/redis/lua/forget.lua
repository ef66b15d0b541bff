-- KEYS: stream. ARGV: group, idle ms, consumer to keep.
-- Removes consumers idle that long that hold no pending entries; returns their names.
-- A stream (a priority level's) without the group has no consumers: {}.
local consumers = redis.pcall('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if type(consumers) == 'table' and consumers.err then
  local missing = string.find(consumers.err, 'NOGROUP', 1, true)
  if missing or string.find(consumers.err, 'no such key', 1, true) then return {} end
  return redis.error_reply(consumers.err)
end
local removed = {}
for _, consumer in ipairs(consumers) do
  local info = {}
  for i = 1, #consumer, 2 do info[consumer[i]] = consumer[i + 1] end
  if info['pending'] == 0 and info['idle'] >= tonumber(ARGV[2]) and info['name'] ~= ARGV[3] then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    removed[#removed + 1] = info['name']
  end
end
return removed
