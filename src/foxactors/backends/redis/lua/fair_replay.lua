-- KEYS: the five fair keys, then the dead-letter stream.
-- ARGV: lists prefix, dead letter id, field names to drop...
-- Moves one dead letter back to the back of its tenant's list (without the
-- dead-letter fields; replay_entry() is prepended), as a publish would add it: it
-- then waits for its tenant's turn and counts against its limit. Returns 1, or 0 if
-- the letter is gone.
local fields = replay_entry(KEYS[6], ARGV[2], 3)
if not fields then return 0 end
local t = tenant_of(fields)
redis.call('RPUSH', LISTS .. t, cmsgpack.pack(fields))
redis.call('HINCRBY', OUT, ':ready', 1)
if room(t) then activate(t) end
wake()
redis.call('XDEL', KEYS[6], ARGV[2])
return 1
