-- retry (_transitions.retry): a dead or cancelled job back to pending, uncommitted.
-- ARGV[3..5]: id, now, tenant (JSON; '' for any tenant).
-- Returns {'missing'}, {'corrupt', why}, {'live', state} or {'ok', names, values}.
local id, now, tenant = ARGV[3], ARGV[4], ARGV[5]
local r, why = read(id)
if not r then return why and {'corrupt', why} or {'missing'} end
if tenant ~= '' and r.tenant ~= tenant then return {'missing'} end
if r.state ~= '"dead"' and r.state ~= CANCELLED then return {'live', r.st} end
change(id, r, {
  state = PENDING, attempt = '0', enqueued_at = now, scheduled_at = false, started_at = false,
  finished_at = false, expires_at = false, lease_until = false, next_run_at = false,
  progress = false, progress_message = false, result = false, reason = false,
  cancel_requested = 'false', committed = 'false',
})
return reply('ok', id)
