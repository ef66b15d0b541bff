-- reap: one batch of what expired, by the indexes, in the memory store's order of
-- checks: records past retention (phase 1), then abandoned enqueues (2), then leases
-- that ran out (3). A phase runs only once those before it are done, so a record a
-- later phase changes is not reaped again in the same pass (retention 0).
-- ARGV[3..7]: now, expires (now + retention), abandon_after, batch size, first phase.
-- Returns {expired leases, expired records, abandoned, next phase (0: done)}.
local now_text, expires, abandon_text = ARGV[3], ARGV[4], ARGV[5]
local batch, phase = tonumber(ARGV[6]), tonumber(ARGV[7])
local now, abandon = tonumber(now_text), tonumber(abandon_text)
local leases, records, abandoned = 0, 0, 0

if phase <= 1 then
  local finished = P .. ':finished'
  local ids = redis.call('ZRANGEBYSCORE', finished, '-inf', now_text, 'LIMIT', 0, batch)
  for _, id in ipairs(ids) do
    local r = read(id)
    if r and FINAL[r.state] and (tonumber(r.expires_at) or 0) <= now then
      delete(id, r)
      records = records + 1
    elseif r and FINAL[r.state] then
      redis.call('ZADD', finished, r.expires_at or 0, id)
    else  -- gone, or unreadable: left as it is, out of the index
      redis.call('ZREM', finished, id)
    end
  end
  if #ids == batch then return {leases, records, abandoned, 1} end
end

if phase <= 2 then
  -- Due when enqueued_at + abandon_after <= now, computed as the memory store does;
  -- the range is a little wider than now - abandon_after for the rounding.
  local uncommitted = P .. ':uncommitted'
  local bound = now - abandon + (math.abs(now) + math.abs(abandon) + 1) * 1e-12
  local got = redis.call('ZRANGEBYSCORE', uncommitted, '-inf', string.format('%.17g', bound),
    'WITHSCORES', 'LIMIT', 0, batch)
  local changed = 0
  for j = 1, #got, 2 do
    local id = got[j]
    if tonumber(got[j + 1]) + abandon > now then break end
    local r = read(id)
    if not r or r.committed ~= 'false' then
      redis.call('ZREM', uncommitted, id)
      changed = changed + 1
    elseif not (r.state == RUNNING and (tonumber(r.lease_until) or 0) < now) then
      delete(id, r)  -- (a running one whose lease ran out is phase 3's)
      abandoned = abandoned + 1
      changed = changed + 1
    end
  end
  if #got == 2 * batch and changed > 0 then return {leases, records, abandoned, 2} end
end

local running = P .. ':leases'
local ids = redis.call('ZRANGEBYSCORE', running, '-inf', '(' .. now_text, 'LIMIT', 0, batch)
for _, id in ipairs(ids) do
  local r = read(id)
  if r and r.state == RUNNING and (tonumber(r.lease_until) or 0) < now then
    if r.cancel_requested == 'true' then
      cancelled(id, r, now_text, expires)
    else
      change(id, r, {state = PENDING, lease_until = false})
    end
    leases = leases + 1
  elseif r and r.state == RUNNING then
    redis.call('ZADD', running, r.lease_until or 0, id)
  else
    redis.call('ZREM', running, id)
  end
end
if #ids == batch then return {leases, records, abandoned, 3} end
return {leases, records, abandoned, 0}
