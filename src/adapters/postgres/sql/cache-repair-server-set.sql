-- cache-repair-server-set: records the Redis server found trustworthy (cleared or checked) for a key prefix.
-- $1 keyPrefix text
-- $2 identity text: the server's run_id, or every Cluster master's, sorted
-- reply: none
UPDATE cache_redis_servers SET identity = $2, verified_at = now() WHERE key_prefix = $1
