-- KEYS: stream, delayed set, dead-letter stream.
-- ARGV: group, consumer, entry id, mode ("now" | "later" | "dlq"), delay ms,
--       attempts to give back (1 for defer, else 0), unique token, maxlen ("" for none),
--       extra fields (flat) for dead letters.
-- settle_entry() (prepended): a requeue goes back to the end of the stream.
-- Returns 1 (done), 0 (not this consumer's any more: stale) or -1 (entry trimmed).
local stream, maxlen = KEYS[1], ARGV[8]

local function requeue(fields)
  if maxlen ~= '' then
    redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', unpack(fields))
  else
    redis.call('XADD', stream, '*', unpack(fields))
  end
end

local done = settle_entry(stream, KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4],
                          ARGV[5], ARGV[6], ARGV[7], 9, requeue)
return done
