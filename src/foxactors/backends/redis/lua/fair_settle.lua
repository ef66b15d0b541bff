-- KEYS: the five fair keys, then stream, delayed set, dead-letter stream.
-- ARGV: lists prefix, group, consumer, entry id, mode ("now" | "later" | "dlq"),
--       delay ms, attempts to give back, unique token, the tenant whose slot the entry
--       holds as its reader knew it (':' none or unknown), extra fields (flat) for
--       dead letters.
-- settle.lua for a fair queue (settle_entry() is prepended too): a requeue goes back
-- to the front of its tenant's list, and the entry's slot, if it holds one, is freed
-- whatever the mode (a retry waiting for its delay holds none). Returns 1, 0 (stale)
-- or -1 (trimmed).
local function requeue(fields)
  local t = tenant_of(fields)
  redis.call('LPUSH', LISTS .. t, cmsgpack.pack(fields))
  redis.call('HINCRBY', OUT, ':ready', 1)
  if room(t) then activate(t) end
  wake()
end

local done, source = settle_entry(KEYS[6], KEYS[7], KEYS[8], ARGV[2], ARGV[3], ARGV[4],
                                  ARGV[5], ARGV[6], ARGV[7], ARGV[8], 10, requeue)
if done == 1 then
  local t = slot_of(source)
  if t then release(t) end
elseif done == -1 and ARGV[9] ~= ':' then  -- trimmed while pending: its slot goes too
  release(ARGV[9])
end
return done
