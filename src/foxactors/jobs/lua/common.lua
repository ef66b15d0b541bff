-- Prepended to every job-store script (see _redis_scripts.py): the record and its indexes.
--
-- ARGV[1] is the store's prefix P, ARGV[2] the record format version; each script's own
-- arguments follow. Keys are named here from P and the record, not passed as KEYS: the
-- store is for one Redis server (no Cluster).
--
-- A job is the hash P:job:<id>, one field per field of JobRecord.to_dict(), each holding
-- that value's JSON text (a None value: no field). Python writes every value as JSON and
-- reads it back with json.loads, so a result, a time or an error round-trips exactly;
-- these scripts never decode a number or a result, they move JSON text. Decisions use
-- the control fields below: the state ('"running"'), the flags ('true' / 'false').
--
-- Indexes, changed only here, in the same script as the record:
--   P:s:<state>, P:qs:<queue>:<state>, P:ts:<tenant>:<state>   sorted sets, score: the
--       job's creation number (P:seq); listing newest first and ZCARD counts.
--   P:c:<#queue>:<queue><tenant>   hash state -> count, for counts by queue and tenant.
--   P:leases       running jobs by lease_until        (reap: leases that ran out)
--   P:finished     final jobs by expires_at           (reap: records past retention)
--   P:uncommitted  unfinished enqueues by enqueued_at (reap: abandoned enqueues)
--   P:keys         hash <#tenant>:<tenant><key> -> job id (idempotency keys)
--   P:starts       hash running job id -> the token of the start that leased it (start.lua)
-- A change to a final state PUBLISHes the state on P:done:<id> (wait()), and, if the
-- record names a producer's channel (field push: RedisJobStore(push_results=True)),
-- the job's end on that channel (push): a JSON array of ends, written from the stored
-- JSON texts as they are.

local P, FORMAT = ARGV[1], ARGV[2]
local RUNNING, PENDING, CANCELLED = '"running"', '"pending"', '"cancelled"'
local RETRYING = '"retrying"'
local STATES = {
  ['"scheduled"'] = 'scheduled', ['"pending"'] = 'pending', ['"running"'] = 'running',
  ['"retrying"'] = 'retrying', ['"succeeded"'] = 'succeeded', ['"dead"'] = 'dead',
  ['"cancelled"'] = 'cancelled',
}
local FINAL = {['"succeeded"'] = true, ['"dead"'] = true, ['"cancelled"'] = true}
local FLAGS = {['true'] = true, ['false'] = true}
local CONTROL = {
  'v', 'state', 'queue', 'tenant', 'key', 'attempt', 'enqueued_at', 'lease_until',
  'next_run_at', 'expires_at', 'committed', 'cancel_requested', 'push',
}

local function job_key(id) return P .. ':job:' .. id end

local function slot_of(tenant, key) return #tenant .. ':' .. tenant .. key end

-- The text of a JSON string, or nil if `json` is not one.
local function text_of(json)
  local ok, value = pcall(cjson.decode, json)
  if ok and type(value) == 'string' then return value end
  return nil
end

-- Check the control fields of record `r` (field -> JSON text or false) and add the
-- names the indexes use: st (state), q (queue), t (tenant or nil), k (key or nil).
-- Returns r, or nil and why it cannot be used.
local function checked(r)
  if r.v ~= FORMAT then return nil, 'format version ' .. tostring(r.v) end
  r.st = STATES[r.state]
  if not r.st then return nil, 'state ' .. tostring(r.state) end
  r.q = r.queue and text_of(r.queue)
  if not r.q then return nil, 'queue ' .. tostring(r.queue) end
  if r.tenant then
    r.t = text_of(r.tenant)
    if not r.t then return nil, 'tenant ' .. r.tenant end
  end
  if r.key then
    r.k = text_of(r.key)
    if not r.k then return nil, 'key ' .. r.key end
  end
  if not FLAGS[r.committed] or not FLAGS[r.cancel_requested] then
    return nil, 'committed / cancel_requested'
  end
  if not tonumber(r.attempt or '') or not tonumber(r.enqueued_at or '') then
    return nil, 'attempt / enqueued_at'
  end
  return r
end

-- The control fields of job `id`: r; or nil (no such job); or nil and why (unreadable).
local function read(id)
  local values = redis.pcall('HMGET', job_key(id), unpack(CONTROL))
  if values.err then return nil, values.err end
  local r, any = {}, false
  for i, name in ipairs(CONTROL) do
    r[name] = values[i]
    any = any or values[i] ~= false
  end
  if not any then return nil end
  return checked(r)
end

-- {status, names, values}: the record's field names joined by commas, and their JSON
-- texts put together as they are into one JSON array (without the store's push
-- field), so Python reads a record with one json.loads instead of one per field. A
-- field that is not one JSON value spoils the array or its length, never another field.
local function reply(status, id)
  local flat = redis.call('HGETALL', job_key(id))
  local names, values = {}, {}
  for i = 1, #flat, 2 do
    if flat[i] ~= 'push' then
      names[#names + 1] = flat[i]
      values[#values + 1] = flat[i + 1]
    end
  end
  return {status, table.concat(names, ','), '[' .. table.concat(values, ',') .. ']'}
end

local function by_state(r)
  local keys = {P .. ':s:' .. r.st, P .. ':qs:' .. r.q .. ':' .. r.st}
  if r.t then keys[3] = P .. ':ts:' .. r.t .. ':' .. r.st end
  return keys
end

local function tally_key(r)
  if r.t then return P .. ':c:' .. #r.q .. ':' .. r.q .. r.t end
  return nil
end

-- Ends to push, by channel, while each_row runs (nil: publish each end at once).
local PUSHES = nil
-- Bytes of a result pushed with its end at most; a larger one is left in the record.
local PUSH_RESULT_MAX = 16384
-- Bytes of ends one message holds at most (about): more go in another message, so no
-- message nears Redis's output limit for pub/sub clients (32 MB by default).
local PUSH_MESSAGE_MAX = 262144

-- Publish ends (JSON texts) as one message. A refused PUBLISH (an ACL that does not
-- let this worker publish there) is let go: a push only saves a read.
local function publish_ends(channel, ends)
  redis.pcall('PUBLISH', channel, '[' .. table.concat(ends, ',') .. ']')
end

-- Publish the end of job `id` (control fields `new`) on the channel its record names:
-- a message is a JSON array of ends, each [id, state, task, tenant, result, expires_at,
-- size]: size is the result's length in bytes, -1 if it was left out (not a success,
-- or larger than PUSH_RESULT_MAX). Within each_row (start, complete), one message per
-- channel for the rows of the call, sent when the rows are done (or PUSH_MESSAGE_MAX
-- reached); elsewhere (fail, cancel, reap) one message per end.
local function push(id, new)
  local channel = text_of(new.push)
  if not channel then return end
  local task, result = unpack(redis.call('HMGET', job_key(id), 'task', 'result'))
  local size = -1
  if new.state ~= '"succeeded"' or (result and #result > PUSH_RESULT_MAX) then
    result = false
  elseif result then
    size = #result
  else
    size = 4  -- null
  end
  local ending = '[' .. cjson.encode(id) .. ',' .. new.state .. ',' .. (task or 'null') ..
    ',' .. (new.tenant or 'null') .. ',' .. (result or 'null') .. ',' ..
    (new.expires_at or 'null') .. ',' .. size .. ']'
  if not PUSHES then
    publish_ends(channel, {ending})
    return
  end
  local ends = PUSHES[channel]
  if not ends then
    ends = {size = 0}
    PUSHES[channel] = ends
  end
  ends[#ends + 1] = ending
  ends.size = ends.size + #ending
  if ends.size >= PUSH_MESSAGE_MAX then
    PUSHES[channel] = nil
    publish_ends(channel, ends)
  end
end

-- Bring every index from what record `old` was to what `new` is ({} : none).
-- seq: the creation number of a new record (else the old one's is kept).
local function reindex(id, old, new, seq)
  if old.state ~= new.state then
    if old.state then
      local keys = by_state(old)
      seq = seq or redis.call('ZSCORE', keys[1], id)
      for _, key in ipairs(keys) do redis.call('ZREM', key, id) end
      local tally = tally_key(old)
      if tally and redis.call('HINCRBY', tally, old.st, -1) <= 0 then
        redis.call('HDEL', tally, old.st)
      end
    end
    if new.state then
      seq = seq or redis.call('INCR', P .. ':seq')
      for _, key in ipairs(by_state(new)) do redis.call('ZADD', key, seq, id) end
      local tally = tally_key(new)
      if tally then redis.call('HINCRBY', tally, new.st, 1) end
    end
  end
  if new.state == RUNNING then
    if old.state ~= RUNNING or old.lease_until ~= new.lease_until then
      redis.call('ZADD', P .. ':leases', new.lease_until or 0, id)
    end
  elseif old.state == RUNNING then
    redis.call('ZREM', P .. ':leases', id)
    redis.call('HDEL', P .. ':starts', id)
  end
  local was_final, is_final = FINAL[old.state or ''], FINAL[new.state or '']
  if is_final then
    if not was_final or old.expires_at ~= new.expires_at then
      redis.call('ZADD', P .. ':finished', new.expires_at or 0, id)
    end
  elseif was_final then
    redis.call('ZREM', P .. ':finished', id)
  end
  if new.committed == 'false' then
    if old.committed ~= 'false' or old.enqueued_at ~= new.enqueued_at then
      redis.call('ZADD', P .. ':uncommitted', new.enqueued_at, id)
    end
  elseif old.committed == 'false' then
    redis.call('ZREM', P .. ':uncommitted', id)
  end
  if is_final and not was_final then
    redis.call('PUBLISH', P .. ':done:' .. id, new.st)
    if new.push then push(id, new) end
  end
end

-- Write `changes` (field -> JSON text, or false: no value) to job `id`, whose control
-- fields are `r`, and its indexes. Returns the control fields after.
local function change(id, r, changes)
  local new, set, unset = {}, {}, {}
  for name, value in pairs(r) do new[name] = value end
  for name, value in pairs(changes) do
    new[name] = value
    if value then
      set[#set + 1] = name
      set[#set + 1] = value
    else
      unset[#unset + 1] = name
    end
  end
  if #set > 0 then redis.call('HSET', job_key(id), unpack(set)) end
  if #unset > 0 then redis.call('HDEL', job_key(id), unpack(unset)) end
  new.st = STATES[new.state]
  reindex(id, r, new)
  return new
end

-- Delete job `id` (control fields `r`), its index entries and its key, if it holds it.
local function delete(id, r)
  reindex(id, r, {})
  redis.call('DEL', job_key(id))
  if r.k then
    local slot = slot_of(r.t or '', r.k)
    if redis.call('HGET', P .. ':keys', slot) == id then redis.call('HDEL', P .. ':keys', slot) end
  end
end

-- _transitions._final: the record in final `state` at `now`, kept until `expires`.
local function finish(id, r, state, now, expires, more)
  local changes = {
    state = state, finished_at = now, expires_at = expires, lease_until = false,
    next_run_at = false,
  }
  for name, value in pairs(more) do changes[name] = value end
  return change(id, r, changes)
end

-- _transitions.cancelled: no result, reason "cancelled".
local function cancelled(id, r, now, expires, more)
  local changes = {result = false, reason = '"cancelled"'}
  for name, value in pairs(more or {}) do changes[name] = value end
  return finish(id, r, CANCELLED, now, expires, changes)
end


-- Run `one` on each row of `width` arguments from ARGV[3]; one reply per row. A row
-- that Redis refuses (a command error) answers {'error', why} and the others go on, as
-- separate calls would: the rows joined into one call fail alone.
local function each_row(width, one)
  local replies = {}
  PUSHES = {}
  for i = 3, #ARGV, width do
    local ok, answer = pcall(one, unpack(ARGV, i, i + width - 1))
    if not ok then
      answer = {'error', type(answer) == 'table' and answer.err or tostring(answer)}
    end
    replies[#replies + 1] = answer
  end
  for channel, ends in pairs(PUSHES) do publish_ends(channel, ends) end
  PUSHES = nil
  return replies
end
