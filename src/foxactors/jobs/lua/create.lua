-- create / create_many: insert records, unless their tenant's idempotency key is held.
-- ARGV[3]: a JSON array with one array per record: id, key slot ('' for no key), the
-- job's stream entry ('' for none: see below), then the record's field/value pairs
-- (strings: JSON texts, moved as they are). One argument for the batch: one decode
-- here, instead of a bulk string per field per record.
-- An entry is the arguments of an XADD (RedisBackend.entry_command): the delivery of a
-- job whose broker is this same Redis server, added in this script with its record, so
-- that the two exist together or not at all (no uncommitted record to commit after).
-- Returns per record {'created'}, {'taken', names, values} (the holder's record: see
-- reply in common.lua), or {'refused', why}: Redis refused the XADD, and the record
-- and its key are gone again. A record whose id exists already answers 'created' and
-- changes nothing (adds no entry): a retried call is harmless.
local replies = {}
for _, row in ipairs(cjson.decode(ARGV[3])) do
  local id, slot, entry = row[1], row[2], row[3]
  local holder = slot ~= '' and redis.call('HGET', P .. ':keys', slot)
  if holder and holder ~= id and redis.call('EXISTS', job_key(holder)) == 1 then
    replies[#replies + 1] = reply('taken', holder)
  elseif redis.call('EXISTS', job_key(id)) == 1 then
    replies[#replies + 1] = {'created'}
  else
    local r = {}
    for j = 4, #row, 2 do r[row[j]] = row[j + 1] end
    local ok, why = checked(r)
    if not ok then return redis.error_reply('job record ' .. id .. ' cannot be written: ' .. why) end
    redis.call('HSET', job_key(id), unpack(row, 4))
    if slot ~= '' then redis.call('HSET', P .. ':keys', slot, id) end
    reindex(id, {}, r)
    local added = entry ~= '' and redis.pcall('XADD', unpack(entry))
    if type(added) == 'table' and added.err then
      delete(id, r)
      replies[#replies + 1] = {'refused', added.err}
    else
      replies[#replies + 1] = {'created'}
    end
  end
end
return replies
