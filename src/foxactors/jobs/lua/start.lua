-- start (_transitions.start): a delivery of the job reached a worker; its attempt is
-- the record's last plus one.
-- ARGV[3..6]: id, now, lease_until, expires (now + retention).
-- Returns {'missing'}, {'corrupt', why}, or {'run' | 'cancelled' | 'finished', fields...}.
local id, now, lease_until, expires = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local r, why = read(id)
if not r then return why and {'corrupt', why} or {'missing'} end
if r.state == CANCELLED then return reply('cancelled', id) end
if FINAL[r.state] then return reply('finished', id) end
if r.cancel_requested == 'true' then  -- a running attempt's worker died after the cancel
  cancelled(id, r, now, expires)
  return reply('cancelled', id)
end
change(id, r, {
  state = RUNNING, attempt = tostring(tonumber(r.attempt) + 1), started_at = now, lease_until = lease_until,
  next_run_at = false, committed = 'true',
})
return reply('run', id)
