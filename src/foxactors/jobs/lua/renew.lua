-- renew (_transitions.heartbeat, for many): renew the leases of running attempts.
-- ARGV[3]: lease_until; ARGV[4..]: id, attempt, id, attempt...
-- Returns the ids among them whose job has a cancel recorded.
local lease_until = ARGV[3]
local cancelled = {}
for i = 4, #ARGV, 2 do
  local id, attempt = ARGV[i], ARGV[i + 1]
  local r = read(id)
  if r then
    if r.state == RUNNING and tonumber(r.attempt) == tonumber(attempt) then
      change(id, r, {lease_until = lease_until})
    end
    if r.cancel_requested == 'true' then cancelled[#cancelled + 1] = id end
  end
end
return cancelled
