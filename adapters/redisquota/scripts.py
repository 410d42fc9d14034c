"""The Lua scripts that allocate from a window inside Redis, so that every mixer sharing the Redis
sees one counter: read, decide and add run as one atomic step on the server.

Both take the limit, the window (and bucket) length and the current time in integer microseconds
(the mixer's clock, as Mixer's adapter did: replicas need synchronised clocks), the amount asked
and best effort as 1/0, and answer ``granted remaining microseconds-until-capacity-frees`` as one
status reply (one line to parse on the client, where a three-element array reply cost as much as
the command's send). Times written into Redis or answered are the ARGV text itself or formatted
with ``%.0f``: Lua's own number to string conversion keeps 14 digits, too few for a microsecond
timestamp.
"""

from __future__ import annotations

# The same decision as memquota's window: it starts at its first allocation and resets once
# ``window`` has passed; best effort takes what is left, otherwise all or nothing.
FIXED_WINDOW = """
local key = KEYS[1]
local max_amount = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local asked = tonumber(ARGV[3])
local best_effort = ARGV[4] == '1'
local now = tonumber(ARGV[5])
local state = redis.call('HMGET', key, 'start', 'used')
local start, used = tonumber(state[1]), tonumber(state[2])
if not start or not used or now - start >= window then
  start, used = now, 0
  redis.call('HSET', key, 'start', ARGV[5], 'used', 0)
  redis.call('PEXPIRE', key, math.ceil(window / 1000))
end
local left = max_amount - used
if left < 0 then left = 0 end
local granted = 0
if best_effort then
  granted = math.min(asked, left)
elseif asked <= left then
  granted = asked
end
if granted > 0 then redis.call('HINCRBY', key, 'used', granted) end
return {ok = string.format('%.0f %.0f %.0f', granted, left - granted, start + window - now)}
"""

# A window that slides in steps of one bucket: tokens granted during a bucket count until the
# bucket's start is ``window`` old. KEYS[1] holds the running total and the open bucket, KEYS[2]
# the closed buckets (score: their start, member: "seq:tokens").
ROLLING_WINDOW = """
local meta, buckets = KEYS[1], KEYS[2]
local max_amount = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local bucket = tonumber(ARGV[3])
local asked = tonumber(ARGV[4])
local best_effort = ARGV[5] == '1'
local now = tonumber(ARGV[6])
local state = redis.call('HMGET', meta, 'used', 'bstart', 'bused')
local used = tonumber(state[1]) or 0
local bstart = tonumber(state[2])
local bused = tonumber(state[3]) or 0
if not bstart or now - bstart >= bucket then
  if bstart and bused > 0 then
    local seq = redis.call('HINCRBY', meta, 'seq', 1)
    redis.call('ZADD', buckets, state[2], seq .. ':' .. bused)
  end
  bstart, bused = now, 0
  redis.call('HSET', meta, 'bstart', ARGV[6], 'bused', 0)
end
local horizon = string.format('%.0f', now - window)
local expired = redis.call('ZRANGEBYSCORE', buckets, '-inf', horizon)
for _, member in ipairs(expired) do
  used = used - tonumber(string.match(member, ':(%d+)$'))
end
if #expired > 0 then redis.call('ZREMRANGEBYSCORE', buckets, '-inf', horizon) end
if used < 0 then used = 0 end
local left = max_amount - used
if left < 0 then left = 0 end
local granted = 0
if best_effort then
  granted = math.min(asked, left)
elseif asked <= left then
  granted = asked
end
used = used + granted
bused = bused + granted
redis.call('HSET', meta, 'used', used, 'bused', bused)
local ttl = math.ceil((window + bucket) / 1000)
redis.call('PEXPIRE', meta, ttl)
redis.call('PEXPIRE', buckets, ttl)
local frees = window
local oldest = redis.call('ZRANGE', buckets, 0, 0, 'WITHSCORES')
if oldest[2] then
  frees = tonumber(oldest[2]) + window - now
elseif bused > 0 then
  frees = bstart + window - now
end
return {ok = string.format('%.0f %.0f %.0f', granted, left - granted, frees)}
"""
