-- progress (_transitions.progress): record the running attempt's progress.
-- ARGV[3..6]: id, attempt, percent, message ('' for None).
-- Returns {'missing'}, {'corrupt', why}, {'cancel'} (a cancel was recorded) or {'ok'}.
local id, attempt, percent, message = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local r, why = read(id)
if not r then return why and {'corrupt', why} or {'missing'} end
if r.state == RUNNING and tonumber(r.attempt) == tonumber(attempt) then
  change(id, r, {progress = percent, progress_message = message ~= '' and message})
end
return {r.cancel_requested == 'true' and 'cancel' or 'ok'}
