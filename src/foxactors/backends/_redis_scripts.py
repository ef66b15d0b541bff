"""Lua scripts of the Redis Streams backend: each one a step that must not half-happen.

Redis runs a script atomically, so a copy and the acknowledgement of its original,
or a due entry's move from the delayed set back into its stream, happen together
or not at all: exactly once, even with many consumers and schedulers at work.
"""

from __future__ import annotations

# KEYS: stream, delayed set, dead-letter stream.
# ARGV: group, consumer, entry id, mode ("now" | "later" | "dlq"), delay ms,
#       attempts to give back (1 for defer, else 0), unique token, maxlen ("" for none),
#       extra fields (flat) for dead letters.
# Returns 1 (done), 0 (not this consumer's any more: stale) or -1 (entry trimmed).
SETTLE = """
local stream, group, me, id, mode = KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local pending = redis.call('XPENDING', stream, group, id, id, 1)
if #pending == 0 or pending[1][2] ~= me then return 0 end
local entry = redis.call('XRANGE', stream, id, id)
if #entry == 0 then
  redis.call('XACK', stream, group, id)
  return -1
end
local source, fields, prior, has_id = entry[1][2], {}, 0, false
for i = 1, #source, 2 do
  local key = source[i]
  if key == 'x-attempt' and mode ~= 'dlq' then
    prior = tonumber(source[i + 1]) or 0
  else
    if key == 'id' then has_id = true end
    fields[#fields + 1] = key
    fields[#fields + 1] = source[i + 1]
  end
end
if not has_id then
  fields[#fields + 1] = 'id'
  fields[#fields + 1] = id
end
if mode == 'dlq' then
  for i = 9, #ARGV do fields[#fields + 1] = ARGV[i] end
  redis.call('XADD', KEYS[3], '*', unpack(fields))
else
  fields[#fields + 1] = 'x-attempt'
  fields[#fields + 1] = tostring(prior + pending[1][4] - tonumber(ARGV[6]))
  if mode == 'later' then
    local now = redis.call('TIME')
    local due = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + tonumber(ARGV[5])
    table.insert(fields, 1, ARGV[7])
    redis.call('ZADD', KEYS[2], due, cmsgpack.pack(fields))
  elseif ARGV[8] ~= '' then
    redis.call('XADD', stream, 'MAXLEN', '~', ARGV[8], '*', unpack(fields))
  else
    redis.call('XADD', stream, '*', unpack(fields))
  end
end
redis.call('XACK', stream, group, id)
return 1
"""

# KEYS: delayed set. ARGV: delay ms, unique token, fields (flat).
SCHEDULE = """
local now = redis.call('TIME')
local due = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + tonumber(ARGV[1])
local fields = {}
for i = 2, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('ZADD', KEYS[1], due, cmsgpack.pack(fields))
return due
"""

# KEYS: delayed set, stream. ARGV: how many at most, maxlen ("" for none).
# Returns {moved, ms until the next one is due (-1: none waiting)}.
MOVE_DUE = """
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, member in ipairs(due) do
  local fields = cmsgpack.unpack(member)
  table.remove(fields, 1)
  if ARGV[2] ~= '' then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(fields))
  else
    redis.call('XADD', KEYS[2], '*', unpack(fields))
  end
  redis.call('ZREM', KEYS[1], member)
end
local next = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #next == 0 then return {#due, -1} end
return {#due, math.max(0, tonumber(next[2]) - now)}
"""

# KEYS: stream. ARGV: group, consumer, min idle ms, cursor, count.
# Claims entries idle that long (XAUTOCLAIM, which drops trimmed ones from the pending
# list) and returns {next cursor, {{id, delivery count, fields}...}, {trimmed ids}}.
RECLAIM = """
local stream, group, me = KEYS[1], ARGV[1], ARGV[2]
local claimed = redis.call('XAUTOCLAIM', stream, group, me, ARGV[3], ARGV[4], 'COUNT', ARGV[5])
local out = {}
for _, entry in ipairs(claimed[2]) do
  local pending = redis.call('XPENDING', stream, group, entry[1], entry[1], 1)
  out[#out + 1] = {entry[1], pending[1][4], entry[2]}
end
return {claimed[1], out, claimed[3] or {}}
"""

# KEYS: stream. ARGV: group, consumer, ids...
# Resets the idle time of the entries this consumer still owns; returns the others.
RENEW = """
local stream, group, me, lost = KEYS[1], ARGV[1], ARGV[2], {}
for i = 3, #ARGV do
  local pending = redis.call('XPENDING', stream, group, ARGV[i], ARGV[i], 1)
  if #pending == 1 and pending[1][2] == me then
    redis.call('XCLAIM', stream, group, me, 0, ARGV[i], 'JUSTID')
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
"""

# KEYS: stream. ARGV: group, idle ms, consumer to keep.
# Removes consumers idle that long that hold no pending entries; returns their names.
FORGET = """
local removed = {}
for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = {}
  for i = 1, #consumer, 2 do info[consumer[i]] = consumer[i + 1] end
  if info['pending'] == 0 and info['idle'] >= tonumber(ARGV[2]) and info['name'] ~= ARGV[3] then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    removed[#removed + 1] = info['name']
  end
end
return removed
"""

# KEYS: dead-letter stream, stream. ARGV: dead letter id, maxlen, field names to drop...
# Moves one dead letter back to its stream (without the dead-letter fields).
REPLAY = """
local entry = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #entry == 0 then return 0 end
local drop = {}
for i = 3, #ARGV do drop[ARGV[i]] = true end
local fields, source = {}, entry[1][2]
for i = 1, #source, 2 do
  if not drop[source[i]] then
    fields[#fields + 1] = source[i]
    fields[#fields + 1] = source[i + 1]
  end
end
if ARGV[2] ~= '' then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(fields))
else
  redis.call('XADD', KEYS[2], '*', unpack(fields))
end
redis.call('XDEL', KEYS[1], ARGV[1])
return 1
"""
