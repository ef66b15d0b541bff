-- heartbeat (_transitions.heartbeat): renew the lease of the running attempt.
-- ARGV[3..5]: id, attempt, lease_until.
-- Returns {'missing'}, {'corrupt', why}, {'cancel'} (a cancel was recorded) or {'ok'}.
local id, attempt, lease_until = ARGV[3], ARGV[4], ARGV[5]
local r, why = read(id)
if not r then return why and {'corrupt', why} or {'missing'} end
if r.state == RUNNING and tonumber(r.attempt) == tonumber(attempt) then
  change(id, r, {lease_until = lease_until})
end
return {r.cancel_requested == 'true' and 'cancel' or 'ok'}
