-- settle_entry(): what settle.lua and fair_settle.lua share (prepended to each).
-- Copies the pending entry `id` of `stream` (read by consumer `me` of `group`) as `mode`
-- says and acknowledges it: "dlq" adds it to the dead-letter stream with the fields
-- ARGV[extra_at..] (flat); "later" puts it in the `delayed` set, due in `delay` ms (the
-- member begins with the unique `token`); "now" hands its fields to `requeue`. The copy
-- counts its attempts so far, less `give_back` (1 for defer, else 0); it holds no fair
-- queue's slot (x-slot is left out: see fair_common.lua).
-- Returns 1 (done) and the entry's own fields, 0 (not this consumer's any more:
-- stale) or -1 (entry trimmed).
local function settle_entry(stream, delayed, dead, group, me, id, mode, delay, give_back,
                            token, extra_at, requeue)
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
    elseif key ~= 'x-slot' then
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
    for i = extra_at, #ARGV do fields[#fields + 1] = ARGV[i] end
    redis.call('XADD', dead, '*', unpack(fields))
  else
    fields[#fields + 1] = 'x-attempt'
    fields[#fields + 1] = tostring(prior + pending[1][4] - tonumber(give_back))
    if mode == 'later' then
      local now = redis.call('TIME')
      local due = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
          + tonumber(delay)
      table.insert(fields, 1, token)
      redis.call('ZADD', delayed, due, cmsgpack.pack(fields))
    else
      requeue(fields)
    end
  end
  redis.call('XACK', stream, group, id)
  return 1, source
end
