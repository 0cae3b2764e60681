--[[
lockExtend: renews a lease only if the caller still holds it.

KEYS[1]  the lock key
ARGV[1]  the holder's token
ARGV[2]  new lease length in milliseconds

Reply: 1 if renewed, 0 if the lease was lost.
]]
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
