-- complete / complete of many (_transitions.complete): the handlers returned; each job
-- succeeded, unless a cancel was recorded first.
-- ARGV[3..]: rows of five: id, now, expires (now + retention), result ('' for None),
-- the attempt that ends (a later attempt started: nothing changes). The completions of
-- one event-loop turn come as one call (RedisLink.call_joined).
-- Returns per row {'missing'}, {'corrupt', why}, {'error', what Redis refused} (that row
-- alone) or {'ok', state}.
local function complete(id, now, expires, result, attempt)
  local r, why = read(id)
  if not r then return why and {'corrupt', why} or {'missing'} end
  if FINAL[r.state] or tonumber(r.attempt) ~= tonumber(attempt) then return {'ok', r.st} end
  if r.cancel_requested == 'true' then return {'ok', cancelled(id, r, now, expires).st} end
  local done = finish(id, r, '"succeeded"', now, expires, {
    result = result ~= '' and result, progress = '100.0', error = false,
  })
  return {'ok', done.st}
end

return each_row(5, complete)
