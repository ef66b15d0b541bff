-- discard: delete uncommitted records and free their keys (their enqueue failed).
-- ARGV[3..]: job ids. Missing, committed or unreadable jobs are left as they are.
for i = 3, #ARGV do
  local r = read(ARGV[i])
  if r and r.committed == 'false' then delete(ARGV[i], r) end
end
return 'ok'
