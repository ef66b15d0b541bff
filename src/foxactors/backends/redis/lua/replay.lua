-- KEYS: dead-letter stream, stream. ARGV: dead letter id, maxlen, field names to drop...
-- Moves one dead letter back to its stream (without the dead-letter fields).
local entry = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
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
if ARGV[2] ~= '' then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(fields))
else
  redis.call('XADD', KEYS[2], '*', unpack(fields))
end
redis.call('XDEL', KEYS[1], ARGV[1])
return 1
