-- KEYS: the five fair keys. ARGV: lists prefix, then pairs: a tenant, how many.
-- Frees the slots of entries that left the stream while pending (trimmed or deleted
-- by hand): there is nothing left to acknowledge, but their tenants' counts still
-- held them. Returns how many slots were freed.
local freed = 0
for i = 2, #ARGV, 2 do
  local n = tonumber(ARGV[i + 1])
  release(ARGV[i], n)
  freed = freed + n
end
return freed
