-- KEYS: the five fair keys, then the stream.
-- ARGV: lists prefix, group, then groups of entry ids that hold slots (x-slot): a
--       tenant, how many ids (n), the n ids.
-- Acknowledges the entries; each one acknowledged here frees its tenant's slot (an
-- entry acknowledged before, by a consumer that took it over, freed it then).
-- Returns how many were acknowledged.
local stream, group, done, i = KEYS[6], ARGV[2], 0, 3
while i <= #ARGV do
  local t, n = ARGV[i], tonumber(ARGV[i + 1])
  local acked = redis.call('XACK', stream, group, unpack(ARGV, i + 2, i + 1 + n))
  if acked > 0 then
    done = done + acked
    release(t, acked)
  end
  i = i + 2 + n
end
return done
