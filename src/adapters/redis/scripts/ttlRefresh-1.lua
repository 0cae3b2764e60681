--[[
ttlRefresh: slides a session snapshot's TTL after a read, only if the key still holds that
snapshot's data and less than half its TTL is left. A marker ("<version>:", a delete or a
repair) stored since the read keeps its short lifetime, and a newer snapshot its own TTL.

KEYS[1]  the session key
ARGV[1]  the version the reader saw (integer)
ARGV[2]  TTL in milliseconds
ARGV[3]  refresh below this many milliseconds left (half the TTL)

Reply: 1 when the TTL was set, 0 when the key was left as it was.
]]
local prefix = ARGV[1] .. ':'
-- The version and the first byte after it: data when that byte exists (a marker ends at ':').
local head = redis.call('GETRANGE', KEYS[1], 0, #prefix)
if #head <= #prefix or string.sub(head, 1, #prefix) ~= prefix then
  return 0
end
local left = redis.call('PTTL', KEYS[1])
if left >= 0 and left >= tonumber(ARGV[3]) then
  return 0
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
