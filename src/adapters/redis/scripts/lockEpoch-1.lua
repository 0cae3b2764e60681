--[[
lockEpoch: installs a lock epoch from PostgreSQL, unless a newer one is installed already.

KEYS[1]  the keyspace's lock epoch (`<p>lock-epoch`)
ARGV[1]  the epoch (integer)

Reply: the epoch installed after the call.
]]
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local epoch = tonumber(ARGV[1])
if epoch > current then
  redis.call('SET', KEYS[1], ARGV[1])
  return epoch
end
return current
