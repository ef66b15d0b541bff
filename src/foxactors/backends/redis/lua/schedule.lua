-- KEYS: delayed set. ARGV: delay ms, unique token, fields (flat).
local now = redis.call('TIME')
local due = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + tonumber(ARGV[1])
local fields = {}
for i = 2, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('ZADD', KEYS[1], due, cmsgpack.pack(fields))
return due
