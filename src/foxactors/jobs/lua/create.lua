-- create / create_many: insert records, unless their tenant's idempotency key is held.
-- ARGV[3]: a JSON array with one array per record: id, key slot ('' for no key), then
-- the record's field/value pairs (strings: JSON texts, moved as they are). One argument
-- for the batch: one decode here, instead of a bulk string per field per record.
-- Returns per record {'created'} or {'taken', names, values} (the holder's record: see
-- reply in common.lua). A record whose id exists already answers 'created' and changes
-- nothing: a retried call is harmless.
local replies = {}
for _, row in ipairs(cjson.decode(ARGV[3])) do
  local id, slot = row[1], row[2]
  local holder = slot ~= '' and redis.call('HGET', P .. ':keys', slot)
  if holder and holder ~= id and redis.call('EXISTS', job_key(holder)) == 1 then
    replies[#replies + 1] = reply('taken', holder)
  elseif redis.call('EXISTS', job_key(id)) == 1 then
    replies[#replies + 1] = {'created'}
  else
    local r = {}
    for j = 3, #row, 2 do r[row[j]] = row[j + 1] end
    local ok, why = checked(r)
    if not ok then return redis.error_reply('job record ' .. id .. ' cannot be written: ' .. why) end
    redis.call('HSET', job_key(id), unpack(row, 3))
    if slot ~= '' then redis.call('HSET', P .. ':keys', slot, id) end
    reindex(id, {}, r)
    replies[#replies + 1] = {'created'}
  end
end
return replies
