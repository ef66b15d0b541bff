-- KEYS: the five fair keys. ARGV: lists prefix, then per entry: tenant, how many
--       fields (n), then the n field names and values, flat (2n values).
-- fair_push.lua for many entries at once (a backlog filled in a few round trips):
-- each goes to the back of its tenant's list; a tenant joins the ring if it has room.
local i, added = 2, 0
while i <= #ARGV do
  local t, n = ARGV[i], tonumber(ARGV[i + 1])
  local fields = {}
  for j = i + 2, i + 1 + 2 * n do fields[#fields + 1] = ARGV[j] end
  redis.call('RPUSH', LISTS .. t, cmsgpack.pack(fields))
  if room(t) then activate(t) end
  added = added + 1
  i = i + 2 + 2 * n
end
if added > 0 then
  redis.call('HINCRBY', OUT, ':ready', added)
  wake()
end
return added
