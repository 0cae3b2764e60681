--[[
lockAcquire: takes a session's lease if it is free and hands out the session's next lease
counter in the keyspace's current lock epoch. The fencing token is composed from the two by
the caller; the epoch comes from PostgreSQL and is installed here by lockEpoch.

KEYS[1]  the lock key (`<p>s:{<tag>}:lock`)
KEYS[2]  the session's counter (`<p>s:{<tag>}:fence`, a hash: e = epoch, n = counter)
KEYS[3]  the keyspace's lock epoch (`<p>lock-epoch`); a restart or a cleared keyspace loses it
ARGV[1]  the holder's random token
ARGV[2]  lease length in milliseconds

Reply: {1, epoch, counter} when taken; {0} when the lease is held; {-1} when there is no
epoch (nothing taken: the caller gets one from PostgreSQL first). A counter stored under an
older epoch starts again at 1.
]]
local epoch = redis.call('GET', KEYS[3])
if not epoch then
  return {-1}
end
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {0}
end
local stored = redis.call('HGET', KEYS[2], 'e')
if stored == epoch then
  return {1, tonumber(epoch), redis.call('HINCRBY', KEYS[2], 'n', 1)}
end
redis.call('HSET', KEYS[2], 'e', epoch, 'n', 1)
return {1, tonumber(epoch), 1}
