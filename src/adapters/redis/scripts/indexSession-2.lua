--[[
indexSession: keeps a tenant's per-user index and active-session set in step with a cached
snapshot. Both are sorted sets scored by last activity (ms) and both keys carry the tenant's
hash tag, so they share a Cluster slot. Scores only move forward, so a late, older update
cannot reorder; readers verify entries against the snapshots, so an entry left behind by an
out-of-order update is dropped when it is next read.

KEYS[1]  the user's index (sorted set: session id -> last activity ms)
KEYS[2]  the tenant's active-session set (same shape, live sessions only)
ARGV[1]  session id
ARGV[2]  last activity, ms since the epoch
ARGV[3]  '1' while the session is live, '0' once it has ended
ARGV[4]  the user index's maximum length (the least recently active entries are trimmed)

Reply: 1
]]
redis.call('ZADD', KEYS[1], 'GT', ARGV[2], ARGV[1])
local max = tonumber(ARGV[4])
if redis.call('ZCARD', KEYS[1]) > max then
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(max + 1))
end
if ARGV[3] == '1' then
  redis.call('ZADD', KEYS[2], 'GT', ARGV[2], ARGV[1])
else
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return 1
