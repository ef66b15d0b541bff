-- KEYS: the five fair keys, then the stream. ARGV: lists prefix, group.
-- Counts the slots again from what they stand for: each tenant holds one for every
-- entry pending in the group that carries x-slot (see fair_common). Run when a
-- consumer starts: a count left by a consumer of an earlier version (which counted
-- entries that carry no x-slot, and so are never freed now) or by hand is replaced.
-- A tenant that has room again rejoins the ring. A pending entry whose data is gone
-- (trimmed or deleted by hand) is acknowledged: no one can tell whose slot it held,
-- and its holder, finding it no longer pending, frees nothing for it either. With a
-- second consumer group on the stream (whose slots count as one: see docs/tenants.md)
-- nothing is recounted. Returns how many slots are held (-1: not recounted).
local stream, group = KEYS[6], ARGV[2]
if #redis.call('XINFO', 'GROUPS', stream) > 1 then return -1 end
local held, total, start = {}, 0, '-'
while true do
  local page = redis.call('XPENDING', stream, group, start, '+', 1000)
  for _, p in ipairs(page) do
    local entry = redis.call('XRANGE', stream, p[1], p[1])
    local t = #entry > 0 and slot_of(entry[1][2]) or nil
    if #entry == 0 then
      redis.call('XACK', stream, group, p[1])
    elseif t then
      held[t] = (held[t] or 0) + 1
      total = total + 1
    end
  end
  if #page < 1000 then break end
  start = '(' .. page[#page][1]
end
local counted = redis.call('HGETALL', OUT)
for i = 1, #counted, 2 do
  local t, n = counted[i], tonumber(counted[i + 1])
  if t ~= ':ready' and n ~= (held[t] or 0) then
    if held[t] then redis.call('HSET', OUT, t, held[t]) else redis.call('HDEL', OUT, t) end
    if (held[t] or 0) < n and redis.call('HEXISTS', TURN, t) == 0
        and redis.call('LLEN', LISTS .. t) > 0 and room(t) then
      activate(t)
      wake()
    end
  end
  held[t] = nil
end
for t, n in pairs(held) do redis.call('HSET', OUT, t, n) end  -- counted nowhere yet
return total
