-- KEYS: the streams of a queue's priority levels, highest first.
-- ARGV: group, consumer, how many at most.
-- Reads new entries for the group, highest level first, no more than asked in all
-- (XREADGROUP's COUNT holds per stream), so a consumer never reads past its credit.
-- A level's stream that exists without the group (its first entry came after the
-- consumers started) gets the group from its first entry.
-- Returns {1, {{level, entries}...}} or, when nothing is new, {0, {last id...}}: the
-- ids after which an entry will be new, for a blocking XREAD to wait on.
local group, me, want = ARGV[1], ARGV[2], tonumber(ARGV[3])
local out = {}
for level, key in ipairs(KEYS) do
  if want <= 0 then break end
  local reply = redis.pcall('XREADGROUP', 'GROUP', group, me, 'COUNT', want, 'STREAMS', key, '>')
  if type(reply) == 'table' and reply.err then
    if not string.find(reply.err, 'NOGROUP', 1, true) then return redis.error_reply(reply.err) end
    reply = false
    if redis.call('EXISTS', key) == 1 then
      redis.call('XGROUP', 'CREATE', key, group, '0')
      reply = redis.call('XREADGROUP', 'GROUP', group, me, 'COUNT', want, 'STREAMS', key, '>')
    end
  end
  if reply then
    local entries = reply[1][2]
    if #entries > 0 then
      out[#out + 1] = {level, entries}
      want = want - #entries
    end
  end
end
if #out > 0 then return {1, out} end
local last = {}
for level, key in ipairs(KEYS) do
  local entry = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)
  last[level] = #entry > 0 and entry[1][1] or '0-0'
end
return {0, last}
