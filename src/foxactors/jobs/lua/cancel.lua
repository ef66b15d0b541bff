-- cancel (_transitions.cancel): record a cancel; it wins over a later completion.
-- ARGV[3..6]: id, now, expires (now + retention), tenant (JSON; '' for any tenant).
-- Returns {'missing'}, {'corrupt', why}, or {'cancelled' | 'requested' | 'finished', names,
-- values} (the record: see reply in common.lua).
local id, now, expires, tenant = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local r, why = read(id)
if not r then return why and {'corrupt', why} or {'missing'} end
if tenant ~= '' and r.tenant ~= tenant then return {'missing'} end
if FINAL[r.state] then return reply('finished', id) end
if r.state == RUNNING then
  change(id, r, {cancel_requested = 'true'})
  return reply('requested', id)
end
cancelled(id, r, now, expires, {cancel_requested = 'true'})
return reply('cancelled', id)
