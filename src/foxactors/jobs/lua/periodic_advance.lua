-- periodic_advance: remember the last tick a periodic job enqueued; it only moves forward.
-- ARGV[3]: the periodic job's name; ARGV[4]: the tick (Unix seconds, JSON number text).
-- Reply: 1 if the tick is later than the one remembered (now remembered), else 0.
local key = P .. ':periodic:last'
local known = redis.call('HGET', key, ARGV[3])
if known and tonumber(known) >= tonumber(ARGV[4]) then return 0 end
redis.call('HSET', key, ARGV[3], ARGV[4])
return 1
