-- KEYS: the five fair keys, then the stream.
-- ARGV: lists prefix, count, then the tenants of a dedicated consumer (none: every
--       tenant, by the ring).
-- Moves up to count entries from the tenants' lists into the stream, by weighted turns
-- (or, dedicated, the named tenant least served for its weight first), each holding a
-- slot of its tenant where slots are counted (see fair_common); and trims the stream
-- below the oldest entry any group holds pending or has yet to read (the stream only
-- carries entries to their readers: nothing pending or unread is ever trimmed).
-- The caller reads what it moved with an XREADGROUP in the same MULTI (a reply made
-- here would be copied into Lua and out again: twice the server's time of a read).
-- Returns {how many were moved, the wake stream's last id}.
local stream, count = KEYS[6], tonumber(ARGV[2])
local dedicated = #ARGV > 2
local track = dedicated or tracking()
local moved = 0

local function move(t, n)  -- up to n entries from the front of t's list, to the stream
  local popped = redis.call('LPOP', LISTS .. t, n)
  if not popped then return 0 end
  for _, packed in ipairs(popped) do
    local fields = cmsgpack.unpack(packed)
    if track then
      fields[#fields + 1] = 'x-slot'
      fields[#fields + 1] = '1'
    end
    redis.call('XADD', stream, '*', unpack(fields))
  end
  moved = moved + #popped
  return #popped
end

if dedicated then
  while moved < count do
    local best, share = nil, nil
    for i = 3, #ARGV do
      local t = ARGV[i]
      if redis.call('LLEN', LISTS .. t) > 0 and room(t) then
        local s = out_of(t) / weight(t)
        if best == nil or s < share then best, share = t, s end
      end
    end
    if best == nil then break end
    move(best, 1)
    redis.call('HINCRBY', OUT, best, 1)
  end
else
  -- The ring's first `count` tenants are read once and their turns played here; the
  -- ring, turns and counts are written back at the end: a few commands a pull, not a
  -- few an entry. A tenant whose list ran dry leaves the ring when next at its head.
  local heads, i, rotated, whole
  local turns, outs, taken = {}, {}, {}  -- credit (false: left the ring), out, moved now
  local stored = {}  -- each tenant's credit as the turn hash had it
  local function fetch()  -- the ring's first `count` (never all of a long ring)
    heads = count > 0 and redis.call('LRANGE', RING, 0, count - 1) or {}
    i, rotated, whole = 1, {}, #heads < count
  end
  local function append(tenants)  -- to the back of the ring (unpack takes a few thousand)
    for first = 1, #tenants, 1000 do
      redis.call('RPUSH', RING, unpack(tenants, first, math.min(#tenants, first + 999)))
    end
  end
  local function flush()
    if whole then  -- the whole ring is here: write it as it now is
      local ring = {}
      for j = i, #heads do ring[#ring + 1] = heads[j] end
      for _, t in ipairs(rotated) do ring[#ring + 1] = t end
      redis.call('DEL', RING)
      append(ring)
    else
      if i > 1 then redis.call('LTRIM', RING, i - 1, -1) end
      append(rotated)
    end
  end
  fetch()
  while moved < count do
    if i > #heads then
      if whole then
        if #rotated == 0 then break end
        heads, i, rotated = rotated, 1, {}  -- the next round, still all here
      else
        flush()
        fetch()
        if #heads == 0 then break end
      end
    end
    local t = heads[i]
    local limit, credit, w = limit_of(t), turns[t], weight(t)
    if credit == nil and w == 1 then  -- a turn of one: nothing stored to look up
      credit, stored[t] = 0, 0
    elseif credit == nil then
      credit = tonumber(redis.call('HGET', TURN, t)) or 0
      stored[t] = credit
    end
    if limit and outs[t] == nil then outs[t] = out_of(t) end
    if credit <= 0 then credit = w end  -- its turn begins
    -- the rest of its turn at once: as its credit, room and our count allow
    local n = math.min(credit, count - moved)
    if limit then n = math.min(n, limit - outs[t]) end
    local got = n > 0 and move(t, n) or 0
    credit = credit - got
    if limit then outs[t] = outs[t] + got end
    if track then taken[t] = (taken[t] or 0) + got end
    if got < n or (limit and outs[t] >= limit) then  -- ran dry or filled its limit
      turns[t], i = false, i + 1
    elseif credit <= 0 then  -- its turn is spent: to the back
      if w ~= 1 or stored[t] ~= 0 then turns[t] = 0 end  -- (a turn of one: nothing kept)
      i = i + 1
      rotated[#rotated + 1] = t
    else  -- our count ran out first: it stays at the head
      turns[t] = credit
    end
  end
  flush()
  for t, credit in pairs(turns) do
    if not credit then
      redis.call('HDEL', TURN, t)
    elseif credit ~= stored[t] then
      redis.call('HSET', TURN, t, credit)
    end
  end
  for t, n in pairs(taken) do
    if n > 0 then redis.call('HINCRBY', OUT, t, n) end
  end
end
if moved > 0 then redis.call('HINCRBY', OUT, ':ready', -moved) end

local last = redis.call('XREVRANGE', WAKE, '+', '-', 'COUNT', 1)
last = #last > 0 and last[1][1] or '0-0'
local function before(a, b)  -- stream id a comes before stream id b
  local am, aseq = string.match(a, '(%d+)-(%d+)')
  local bm, bseq = string.match(b, '(%d+)-(%d+)')
  if am ~= bm then return tonumber(am) < tonumber(bm) end
  return tonumber(aseq) < tonumber(bseq)
end
if moved > 0 then  -- the stream grew: drop what every group's readers are done with
  local low  -- each group's oldest pending entry, or the last one it was given
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    local info = {}
    for j = 1, #g, 2 do info[g[j]] = g[j + 1] end
    local keep = info['last-delivered-id']
    if tonumber(info['pending']) > 0 then
      keep = redis.call('XPENDING', stream, info['name'])[2]
    end
    if low == nil or before(keep, low) then low = keep end
  end
  if low then redis.call('XTRIM', stream, 'MINID', '~', low) end
end
return {moved, last}
