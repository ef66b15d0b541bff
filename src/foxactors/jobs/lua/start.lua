-- start / start of many (_transitions.start): deliveries of jobs reached a worker; each
-- job's attempt is its record's last plus one.
-- ARGV[3..]: rows of five: id, now, lease_until, expires (now + retention), and a token
-- unique to the store's call. The starts of one event-loop turn come as one call
-- (RedisLink.call_joined).
-- A call sent again after its reply was lost (redis-py resends a command once on a
-- fresh connection) finds its own token in P:starts and changes nothing: an attempt
-- is counted once per start, not per send.
-- Returns per row {'missing'}, {'corrupt', why}, {'error', what Redis refused} (that row
-- alone), or {'run' | 'cancelled' | 'finished' | 'busy' | 'not_due', names, values}.
local function start(id, now, lease_until, expires, token)
  local r, why = read(id)
  if not r then return why and {'corrupt', why} or {'missing'} end
  if r.state == CANCELLED then return reply('cancelled', id) end
  if FINAL[r.state] then return reply('finished', id) end
  if r.state == RUNNING and redis.call('HGET', P .. ':starts', id) == token then
    -- this very start ran already, its reply lost: no handler has run for it yet,
    -- so a cancel recorded since wins
    if r.cancel_requested == 'true' then
      cancelled(id, r, now, expires)
      return reply('cancelled', id)
    end
    return reply('run', id)
  end
  if r.state == RUNNING and (tonumber(r.lease_until or '') or 0) > tonumber(now) then
    -- another attempt runs under a live lease: not two at once (a recorded cancel
    -- reaches that worker, which ends the attempt itself)
    return reply('busy', id)
  end
  if r.cancel_requested == 'true' then  -- a running attempt's worker died after the cancel
    cancelled(id, r, now, expires)
    return reply('cancelled', id)
  end
  if r.state == RETRYING and (tonumber(r.next_run_at or '') or 0) > tonumber(now) then
    return reply('not_due', id)  -- a copy back before the retry is due: not early
  end
  redis.call('HSET', P .. ':starts', id, token)
  change(id, r, {
    state = RUNNING, attempt = tostring(tonumber(r.attempt) + 1), started_at = now,
    lease_until = lease_until, next_run_at = false, committed = 'true',
  })
  return reply('run', id)
end

return each_row(5, start)
