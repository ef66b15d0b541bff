-- fail (_transitions.fail): an attempt failed; retrying or dead; a recorded cancel wins.
-- ARGV[3..8]: id, now, expires (now + retention), error ('' for None),
-- retry_at ('' for None: dead), reason.
-- Returns {'missing'}, {'corrupt', why} or {'ok', state}.
local id, now, expires, err = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local retry_at, reason = ARGV[7], ARGV[8]
local r, why = read(id)
if not r then return why and {'corrupt', why} or {'missing'} end
if FINAL[r.state] then return {'ok', r.st} end
if r.cancel_requested == 'true' then return {'ok', cancelled(id, r, now, expires).st} end
if retry_at ~= '' then
  local retrying = change(id, r, {
    state = '"retrying"', next_run_at = retry_at, lease_until = false,
    error = err ~= '' and err, reason = reason,
  })
  return {'ok', retrying.st}
end
return {'ok', finish(id, r, '"dead"', now, expires, {error = err ~= '' and err, reason = reason}).st}
