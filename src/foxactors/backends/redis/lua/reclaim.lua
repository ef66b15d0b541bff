-- KEYS: stream. ARGV: group, consumer, min idle ms, cursor, count.
-- Claims entries idle that long (XAUTOCLAIM, which drops trimmed ones from the pending
-- list) and returns {next cursor, {{id, delivery count, fields}...}, {trimmed ids}}.
-- A stream (a priority level's) without the group holds nothing pending: {"0-0", {}, {}}.
local stream, group, me = KEYS[1], ARGV[1], ARGV[2]
local claimed = redis.pcall('XAUTOCLAIM', stream, group, me, ARGV[3], ARGV[4], 'COUNT', ARGV[5])
if type(claimed) == 'table' and claimed.err then
  if string.find(claimed.err, 'NOGROUP', 1, true) then return {'0-0', {}, {}} end
  return redis.error_reply(claimed.err)
end
local out = {}
for _, entry in ipairs(claimed[2]) do
  local pending = redis.call('XPENDING', stream, group, entry[1], entry[1], 1)
  out[#out + 1] = {entry[1], pending[1][4], entry[2]}
end
return {claimed[1], out, claimed[3] or {}}
