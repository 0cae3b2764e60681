--[[
lockForget: gives back a lease taken on a session that turned out not to exist, and drops its
counter when this lease was its only one (nobody was handed a token from it), so probing
missing ids leaves nothing behind. A counter that handed out other leases stays (a lease taken
for the session before its row was deleted, or for a session created again under the id): the
counter of a deleted row is dropped by whoever deleted it (RedisLeaseCounters.forget).

KEYS[1]  the lock key
KEYS[2]  the session's counter (hash: e, n)
ARGV[1]  the holder's token
ARGV[2]  the epoch of this lease
ARGV[3]  the counter of this lease

Reply: 1 if the counter was dropped, 0 if not.
]]
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
if ARGV[3] == '1' and redis.call('HGET', KEYS[2], 'e') == ARGV[2] and redis.call('HGET', KEYS[2], 'n') == '1' then
  redis.call('DEL', KEYS[2])
  return 1
end
return 0
