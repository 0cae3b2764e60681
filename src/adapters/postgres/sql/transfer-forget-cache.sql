-- transfer-forget-cache: on import, forgets the target's record of trusted Redis servers and pending cache repairs, so every instance clears the shared cache before it next reads from it.
-- reply: one row (repairs, servers: rows deleted)
WITH repairs AS (DELETE FROM cache_repairs RETURNING 1),
     servers AS (DELETE FROM cache_redis_servers RETURNING 1)
SELECT (SELECT count(*) FROM repairs)::int AS repairs, (SELECT count(*) FROM servers)::int AS servers
