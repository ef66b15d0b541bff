-- KEYS: stream. ARGV: group, consumer, ids...
-- Resets the idle time of the entries this consumer still owns. Returns {the ids it
-- no longer owns (lost), the ids whose data was trimmed while pending (gone: the
-- claim drops them from the pending list)}.
local stream, group, me, lost, gone = KEYS[1], ARGV[1], ARGV[2], {}, {}
for i = 3, #ARGV do
  local pending = redis.call('XPENDING', stream, group, ARGV[i], ARGV[i], 1)
  if #pending == 1 and pending[1][2] == me then
    if #redis.call('XCLAIM', stream, group, me, 0, ARGV[i], 'JUSTID') == 0 then
      gone[#gone + 1] = ARGV[i]
    end
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return {lost, gone}
