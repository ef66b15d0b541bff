-- commit: mark enqueues finished (their deliveries are with the broker).
-- ARGV[3..]: job ids. Missing, committed or unreadable jobs are left as they are.
for i = 3, #ARGV do
  local r = read(ARGV[i])
  if r and r.committed == 'false' then change(ARGV[i], r, {committed = 'true'}) end
end
return 'ok'
