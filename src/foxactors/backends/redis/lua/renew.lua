-- KEYS: stream. ARGV: group, consumer, ids...
-- Resets the idle time of the entries this consumer still owns; returns the others.
local stream, group, me, lost = KEYS[1], ARGV[1], ARGV[2], {}
for i = 3, #ARGV do
  local pending = redis.call('XPENDING', stream, group, ARGV[i], ARGV[i], 1)
  if #pending == 1 and pending[1][2] == me then
    redis.call('XCLAIM', stream, group, me, 0, ARGV[i], 'JUSTID')
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
