-- KEYS: the five fair keys, then the stream.
-- ARGV: lists prefix, group, then groups of entry ids: a tenant, how many ids (n), the
--       n ids; the tenant ':' (no tenant's name) for ids whose tenant the caller does
--       not know: each is looked up in the stream.
-- Acknowledges the entries; each one acknowledged here frees its tenant's slot.
-- Returns how many were acknowledged.
local stream, group, done, i = KEYS[6], ARGV[2], 0, 3
while i <= #ARGV do
  local t, n = ARGV[i], tonumber(ARGV[i + 1])
  if t == ':' then
    for j = i + 2, i + 1 + n do
      local id = ARGV[j]
      local entry = redis.call('XRANGE', stream, id, id)
      if redis.call('XACK', stream, group, id) == 1 then
        done = done + 1
        if #entry > 0 then release(tenant_of(entry[1][2])) end
      end
    end
  else
    local acked = redis.call('XACK', stream, group, unpack(ARGV, i + 2, i + 1 + n))
    if acked > 0 then
      done = done + acked
      release(t, acked)
    end
  end
  i = i + 2 + n
end
return done
