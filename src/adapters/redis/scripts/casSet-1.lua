--[[
casSet: stores a session snapshot unless Redis already holds a newer one, and tells the
other instances' near caches. Values are "<version>:<snapshot body>" (the body's layout:
src/adapters/redis/snapshot-format.ts; this script never reads it); an empty snapshot is a
stub ("<version>:"): no data, but nothing older than <version> may be stored over it (used
for deletes and for repairing entries that missed writes while Redis was unreachable).

KEYS[1]  the session key
ARGV[1]  version (integer)
ARGV[2]  snapshot body, or '' for a stub
ARGV[3]  TTL in milliseconds
ARGV[4]  invalidation channel, or '' to tell nobody (a session just created: no instance
         holds an older version of it)
ARGV[5]  invalidation message

Reply: the version stored after the call (ARGV[1] when written, a newer one when kept).
]]
local version = tonumber(ARGV[1])
local current = redis.call('GET', KEYS[1])
if current then
  local sep = string.find(current, ':', 1, true)
  local stored = tonumber(string.sub(current, 1, sep - 1))
  local storedIsStub = sep == #current
  -- Same version: only real data replaces a stub; otherwise the stored value stands.
  if stored > version or (stored == version and not (storedIsStub and ARGV[2] ~= '')) then
    return stored
  end
end
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. ARGV[2], 'PX', ARGV[3])
if ARGV[4] ~= '' then
  redis.call('PUBLISH', ARGV[4], ARGV[5])
end
return version
