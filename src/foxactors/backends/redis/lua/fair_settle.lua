-- KEYS: the five fair keys, then stream, delayed set, dead-letter stream.
-- ARGV: lists prefix, group, consumer, entry id, mode ("now" | "later" | "dlq"),
--       delay ms, attempts to give back, unique token, extra fields (flat) for dead
--       letters.
-- settle.lua for a fair queue: a requeue goes back to the front of its tenant's list,
-- and the entry's slot is freed whatever the mode. Returns 1, 0 (stale) or -1 (trimmed).
local stream, group, me, id, mode = KEYS[6], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local pending = redis.call('XPENDING', stream, group, id, id, 1)
if #pending == 0 or pending[1][2] ~= me then return 0 end
local entry = redis.call('XRANGE', stream, id, id)
if #entry == 0 then
  redis.call('XACK', stream, group, id)
  return -1
end
local source, fields, prior, has_id = entry[1][2], {}, 0, false
for i = 1, #source, 2 do
  local key = source[i]
  if key == 'x-attempt' and mode ~= 'dlq' then
    prior = tonumber(source[i + 1]) or 0
  else
    if key == 'id' then has_id = true end
    fields[#fields + 1] = key
    fields[#fields + 1] = source[i + 1]
  end
end
if not has_id then
  fields[#fields + 1] = 'id'
  fields[#fields + 1] = id
end
local t = tenant_of(source)
if mode == 'dlq' then
  for i = 9, #ARGV do fields[#fields + 1] = ARGV[i] end
  redis.call('XADD', KEYS[8], '*', unpack(fields))
else
  fields[#fields + 1] = 'x-attempt'
  fields[#fields + 1] = tostring(prior + pending[1][4] - tonumber(ARGV[7]))
  if mode == 'later' then
    local now = redis.call('TIME')
    local due = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + tonumber(ARGV[6])
    table.insert(fields, 1, ARGV[8])
    redis.call('ZADD', KEYS[7], due, cmsgpack.pack(fields))
  else
    redis.call('LPUSH', LISTS .. t, cmsgpack.pack(fields))
    redis.call('HINCRBY', OUT, ':ready', 1)
    if room(t) then activate(t) end
    wake()
  end
end
redis.call('XACK', stream, group, id)
release(t)
return 1
