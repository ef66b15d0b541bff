-- KEYS: dead-letter stream, stream. ARGV: dead letter id, maxlen, field names to drop...
-- Moves one dead letter back to its stream (without the dead-letter fields); replay_entry()
-- is prepended. Returns 1, or 0 if the letter is gone.
local fields = replay_entry(KEYS[1], ARGV[1], 3)
if not fields then return 0 end
if ARGV[2] ~= '' then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(fields))
else
  redis.call('XADD', KEYS[2], '*', unpack(fields))
end
redis.call('XDEL', KEYS[1], ARGV[1])
return 1
