-- release (_transitions.release): the attempt stopped unfinished; pending again.
-- ARGV[3..5]: id, now, expires (now + retention).
-- Returns {'missing'}, {'corrupt', why} or {'ok', state}.
local id, now, expires = ARGV[3], ARGV[4], ARGV[5]
local r, why = read(id)
if not r then return why and {'corrupt', why} or {'missing'} end
if FINAL[r.state] then return {'ok', r.st} end
if r.cancel_requested == 'true' then return {'ok', cancelled(id, r, now, expires).st} end
if r.state == RUNNING then return {'ok', change(id, r, {state = PENDING, lease_until = false}).st} end
return {'ok', r.st}
