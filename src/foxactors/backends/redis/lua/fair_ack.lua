-- KEYS: the five fair keys, then the stream. ARGV: lists prefix, group, entry ids...
-- Acknowledges the entries; each one acknowledged here frees its tenant's slot.
local stream, group, done = KEYS[6], ARGV[2], 0
for i = 3, #ARGV do
  local id = ARGV[i]
  local entry = redis.call('XRANGE', stream, id, id)
  if redis.call('XACK', stream, group, id) == 1 then
    done = done + 1
    if #entry > 0 then release(tenant_of(entry[1][2])) end
  end
end
return done
