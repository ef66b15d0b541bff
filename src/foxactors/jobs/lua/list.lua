-- list: one page of records, newest first (highest creation number first).
-- ARGV[3..7]: limit, cursor ('' for the first page, else a creation number: the page
-- starts below it), scan budget, queue filter (JSON, '' for none), tenant filter (same).
-- ARGV[8..]: nA, then nA index keys, nB, then nB index keys: two ways to find the same
-- jobs (by queue or by tenant); the one with fewer entries is read, the filters
-- checked on each job. A page reads at most `budget` index entries: a page cut short
-- by it comes back with a cursor and fewer than `limit` records.
-- Returns {cursor ('' after the last page), n, then n times {fields...}}.
local limit, cursor, budget = tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local want_queue, want_tenant = ARGV[6], ARGV[7]
local nA = tonumber(ARGV[8])
local sources = {}
for i = 9, 8 + nA do sources[#sources + 1] = ARGV[i] end
local nB = tonumber(ARGV[9 + nA] or '0')
if nB > 0 then
  local sizeA, sizeB, other = 0, 0, {}
  for _, key in ipairs(sources) do sizeA = sizeA + redis.call('ZCARD', key) end
  for i = 10 + nA, 9 + nA + nB do
    other[#other + 1] = ARGV[i]
    sizeB = sizeB + redis.call('ZCARD', ARGV[i])
  end
  if sizeB < sizeA then sources = other end
end
local filtered = want_queue ~= '' or want_tenant ~= ''
local chunk = filtered and math.max(limit + 1, 100) or limit + 1

-- A merge of the sources, newest first: each read a chunk at a time below `top`.
local heads, top = {}, cursor == '' and '+inf' or '(' .. cursor
local function fill(source, below)
  local got = redis.call('ZREVRANGEBYSCORE', source.key, below, '-inf', 'WITHSCORES',
    'LIMIT', 0, chunk)
  source.items, source.at, source.more = got, 1, #got == 2 * chunk
end
for i, key in ipairs(sources) do
  heads[i] = {key = key}
  fill(heads[i], top)
end
local function pop()
  local best, best_score
  for _, source in ipairs(heads) do
    if source.at > #source.items and source.more then
      fill(source, '(' .. source.items[#source.items])
    end
    if source.at <= #source.items then
      local score = tonumber(source.items[source.at + 1])
      if not best or score > best_score then best, best_score = source, score end
    end
  end
  if not best then return nil end
  local id, score = best.items[best.at], best.items[best.at + 1]
  best.at = best.at + 2
  return id, score
end
local function wanted(id)
  if not filtered then return true end
  local got = redis.call('HMGET', job_key(id), 'queue', 'tenant')
  return (want_queue == '' or got[1] == want_queue)
    and (want_tenant == '' or got[2] == want_tenant)
end

local found, scanned, next_cursor = {}, 0, ''
while true do
  local id, score = pop()
  if not id then break end
  scanned = scanned + 1
  if wanted(id) then
    if #found == limit then
      next_cursor = found[#found][2]
      break
    end
    found[#found + 1] = {id, score}
  end
  if scanned >= budget then
    next_cursor = score
    break
  end
end
local out = {next_cursor, 0}
for _, item in ipairs(found) do
  local fields = redis.call('HGETALL', job_key(item[1]))
  if #fields > 0 then out[#out + 1] = fields end
end
out[2] = #out - 2
return out
