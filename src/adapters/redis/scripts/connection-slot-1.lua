-- Takes or renews one long-lived connection slot of an API key, shared by every instance.
-- Slots are leases: an instance that dies without releasing its slots loses them when
-- their lease lapses, so a crash never locks a key out for good.
--
-- KEYS[1]  sorted set of the key's slots (member = slot id, score = lease end, ms, Redis clock)
-- ARGV[1]  slot id
-- ARGV[2]  most slots the key may hold
-- ARGV[3]  lease length in milliseconds
-- Reply    1 when the slot is held (taken or renewed), 0 when the key is at its limit
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
