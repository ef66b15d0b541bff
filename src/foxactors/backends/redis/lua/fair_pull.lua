-- KEYS: the five fair keys, then the stream.
-- ARGV: lists prefix, count, group, consumer, maxlen ('' none), then the tenants of a
--       dedicated consumer (none: every tenant, by the ring).
-- Moves up to count entries from the tenants' lists into the stream, by weighted turns
-- (or, dedicated, the named tenant least served for its weight first), counting each
-- against its tenant's limit; then reads for this consumer what the stream has unread,
-- count at most. Returns {the XREADGROUP reply (false: none), the wake stream's last id}.
local stream, count, group, me, maxlen = KEYS[6], tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]
local moved = 0

local function move(t)
  local fields = cmsgpack.unpack(redis.call('LPOP', LISTS .. t))
  if maxlen ~= '' then
    redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', unpack(fields))
  else
    redis.call('XADD', stream, '*', unpack(fields))
  end
  redis.call('HINCRBY', OUT, t, 1)
  redis.call('HINCRBY', OUT, ':ready', -1)
  moved = moved + 1
end

if #ARGV > 5 then
  while moved < count do
    local best, share = nil, nil
    for i = 6, #ARGV do
      local t = ARGV[i]
      if redis.call('LLEN', LISTS .. t) > 0 and room(t) then
        local s = tonumber(redis.call('HGET', OUT, t) or '0') / weight(t)
        if best == nil or s < share then best, share = t, s end
      end
    end
    if best == nil then break end
    move(best)
  end
else
  while moved < count do
    local t = redis.call('LINDEX', RING, 0)
    if not t then break end
    if redis.call('LLEN', LISTS .. t) == 0 or not room(t) then
      redis.call('LPOP', RING)  -- ran dry (a dedicated consumer) or filled its limit
      redis.call('HDEL', TURN, t)
    else
      local credit = tonumber(redis.call('HGET', TURN, t))
      if credit <= 0 then credit = weight(t) end  -- its turn begins
      move(t)
      credit = credit - 1
      if redis.call('LLEN', LISTS .. t) == 0 or not room(t) then
        redis.call('LPOP', RING)
        redis.call('HDEL', TURN, t)
      elseif credit <= 0 then  -- its turn is spent: to the back
        redis.call('HSET', TURN, t, 0)
        redis.call('RPUSH', RING, redis.call('LPOP', RING))
      else
        redis.call('HSET', TURN, t, credit)
      end
    end
  end
end

local last = redis.call('XREVRANGE', WAKE, '+', '-', 'COUNT', 1)
last = #last > 0 and last[1][1] or '0-0'
local read = redis.call('XREADGROUP', 'GROUP', group, me, 'COUNT', count, 'STREAMS', stream, '>')
return {read, last}
