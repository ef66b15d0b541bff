-- KEYS: the five fair keys. ARGV: lists prefix, tenant, front ('1': requeued), fields...
-- Adds an entry to its tenant's list; the tenant joins the ring if it has room.
local t = ARGV[2]
local fields = {}
for i = 4, #ARGV do fields[#fields + 1] = ARGV[i] end
if ARGV[3] == '1' then
  redis.call('LPUSH', LISTS .. t, cmsgpack.pack(fields))
else
  redis.call('RPUSH', LISTS .. t, cmsgpack.pack(fields))
end
redis.call('HINCRBY', OUT, ':ready', 1)
if room(t) then activate(t) end
wake()
return 1
