-- KEYS: the five fair keys, then the dead-letter stream.
-- ARGV: lists prefix, dead letter id, field names to drop...
-- Moves one dead letter back to the back of its tenant's list (without the
-- dead-letter fields), as a publish would add it: it then waits for its tenant's
-- turn and counts against its limit. Returns 1, or 0 if the letter is gone.
local entry = redis.call('XRANGE', KEYS[6], ARGV[2], ARGV[2])
if #entry == 0 then return 0 end
local drop = {}
for i = 3, #ARGV do drop[ARGV[i]] = true end
local fields, source = {}, entry[1][2]
for i = 1, #source, 2 do
  if not drop[source[i]] then
    fields[#fields + 1] = source[i]
    fields[#fields + 1] = source[i + 1]
  end
end
local t = tenant_of(fields)
redis.call('RPUSH', LISTS .. t, cmsgpack.pack(fields))
redis.call('HINCRBY', OUT, ':ready', 1)
if room(t) then activate(t) end
wake()
redis.call('XDEL', KEYS[6], ARGV[2])
return 1
