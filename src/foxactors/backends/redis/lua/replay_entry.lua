-- replay_entry(): what replay.lua and fair_replay.lua share (prepended to each).
-- The fields of dead letter `id` of the dead-letter stream `dead`, without those
-- named ARGV[drop_at..] (the dead-letter fields and the attempt count, so attempts
-- start over); nil if the letter is gone.
local function replay_entry(dead, id, drop_at)
  local entry = redis.call('XRANGE', dead, id, id)
  if #entry == 0 then return nil end
  local drop = {}
  for i = drop_at, #ARGV do drop[ARGV[i]] = true end
  local fields, source = {}, entry[1][2]
  for i = 1, #source, 2 do
    if not drop[source[i]] then
      fields[#fields + 1] = source[i]
      fields[#fields + 1] = source[i + 1]
    end
  end
  return fields
end
