--[[
lockRelease: deletes a lease only if the caller still holds it.

KEYS[1]  the lock key
ARGV[1]  the holder's token

Reply: 1 if released, 0 if the lease had expired or belongs to someone else.
]]
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
