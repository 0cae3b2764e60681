-- cache-repair-server-lock: the Redis server last found trustworthy for a key prefix, locked until the transaction ends (a first call creates the row, with no server).
-- $1 keyPrefix text
-- reply: one row, identity ('' when none was recorded yet)
INSERT INTO cache_redis_servers (key_prefix, identity) VALUES ($1, '')
ON CONFLICT (key_prefix) DO UPDATE SET identity = cache_redis_servers.identity
RETURNING identity
