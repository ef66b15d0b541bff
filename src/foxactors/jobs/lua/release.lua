-- release (_transitions.release): the attempt stopped unfinished; pending again.
-- ARGV[3..5]: id, now, expires (now + retention).
-- ARGV[#ARGV]: the attempt that ends (a later attempt started: nothing changes).
-- Returns {'missing'}, {'corrupt', why} or {'ok', state}.
local id, now, expires = ARGV[3], ARGV[4], ARGV[5]
local r, why = read(id)
if not r then return why and {'corrupt', why} or {'missing'} end
local attempt = ARGV[#ARGV]  -- the attempt that ends: a stale one changes nothing
if FINAL[r.state] or tonumber(r.attempt) ~= tonumber(attempt) then return {'ok', r.st} end
if r.cancel_requested == 'true' then return {'ok', cancelled(id, r, now, expires).st} end
if r.state == RUNNING then return {'ok', change(id, r, {state = PENDING, lease_until = false}).st} end
return {'ok', r.st}
