-- create / create_many: insert records, unless their tenant's idempotency key is held.
-- ARGV[3..]: per record: id, key slot ('' for no key), n, then n field/value pairs.
-- Returns per record {'created'} or {'taken', holder's fields...}. A record whose id
-- exists already answers 'created' and changes nothing: a retried call is harmless.
local replies, i = {}, 3
while i <= #ARGV do
  local id, slot, n = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local first, last = i + 3, i + 2 + 2 * n
  i = last + 1
  local holder = slot ~= '' and redis.call('HGET', P .. ':keys', slot)
  if holder and holder ~= id and redis.call('EXISTS', job_key(holder)) == 1 then
    replies[#replies + 1] = reply('taken', holder)
  elseif redis.call('EXISTS', job_key(id)) == 1 then
    replies[#replies + 1] = {'created'}
  else
    local fields, r = {}, {}
    for j = first, last, 2 do
      fields[#fields + 1] = ARGV[j]
      fields[#fields + 1] = ARGV[j + 1]
      r[ARGV[j]] = ARGV[j + 1]
    end
    local ok, why = checked(r)
    if not ok then return redis.error_reply('job record ' .. id .. ' cannot be written: ' .. why) end
    redis.call('HSET', job_key(id), unpack(fields))
    if slot ~= '' then redis.call('HSET', P .. ':keys', slot, id) end
    reindex(id, {}, r)
    replies[#replies + 1] = {'created'}
  end
end
return replies
