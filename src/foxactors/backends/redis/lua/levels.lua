-- KEYS: the streams of a queue's priority levels, highest first. ARGV: group.
-- Returns, for each level, {lag, last delivered id}: lag is how many entries the
-- group has not read yet (0 for a stream that does not exist yet), -1 when Redis
-- cannot tell (entries deleted mid-stream: read it to see). A level's stream that
-- exists without the group (its first entry came after the consumers started) gets
-- the group, from its first entry.
-- Reads nothing: a consumer reads the levels it has credit for, highest first.
local group, out = ARGV[1], {}
for level, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 0 then
    out[level] = {0, '0-0'}
  else
    local found = nil
    for _, flat in ipairs(redis.call('XINFO', 'GROUPS', key)) do
      local info = {}
      for i = 1, #flat, 2 do info[flat[i]] = flat[i + 1] end
      if info['name'] == group then
        found = info
        break
      end
    end
    if found == nil then  -- every entry is new to a group made from the first
      redis.call('XGROUP', 'CREATE', key, group, '0')
      out[level] = {redis.call('XLEN', key), '0-0'}
    else
      local lag = found['lag']
      if type(lag) ~= 'number' then lag = -1 end
      out[level] = {lag, found['last-delivered-id']}
    end
  end
end
return out
