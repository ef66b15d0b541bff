-- start / start of many (_transitions.start): deliveries of jobs reached a worker; each
-- job's attempt is its record's last plus one.
-- ARGV[3..]: rows of four: id, now, lease_until, expires (now + retention). The starts
-- of one event-loop turn come as one call (RedisLink.call_joined).
-- Returns per row {'missing'}, {'corrupt', why}, {'error', what Redis refused} (that row
-- alone), or {'run' | 'cancelled' | 'finished', fields...}.
local function start(id, now, lease_until, expires)
  local r, why = read(id)
  if not r then return why and {'corrupt', why} or {'missing'} end
  if r.state == CANCELLED then return reply('cancelled', id) end
  if FINAL[r.state] then return reply('finished', id) end
  if r.cancel_requested == 'true' then  -- a running attempt's worker died after the cancel
    cancelled(id, r, now, expires)
    return reply('cancelled', id)
  end
  change(id, r, {
    state = RUNNING, attempt = tostring(tonumber(r.attempt) + 1), started_at = now,
    lease_until = lease_until, next_run_at = false, committed = 'true',
  })
  return reply('run', id)
end

return each_row(4, start)
