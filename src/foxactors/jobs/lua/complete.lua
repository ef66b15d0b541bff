-- complete (_transitions.complete): the handler returned; succeeded unless cancelled.
-- ARGV[3..6]: id, now, expires (now + retention), result ('' for None).
-- Returns {'missing'}, {'corrupt', why} or {'ok', state}.
local id, now, expires, result = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local r, why = read(id)
if not r then return why and {'corrupt', why} or {'missing'} end
if FINAL[r.state] then return {'ok', r.st} end
if r.cancel_requested == 'true' then return {'ok', cancelled(id, r, now, expires).st} end
local done = finish(id, r, '"succeeded"', now, expires, {
  result = result ~= '' and result, progress = '100.0', error = false,
})
return {'ok', done.st}
