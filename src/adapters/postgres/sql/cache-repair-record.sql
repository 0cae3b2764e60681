-- cache-repair-record: records a cache write Redis missed and announces it ("<id> <version>") to every instance, in one statement.
-- $1 sessionId uuid
-- $2 version bigint: the version Redis must not serve anything older than
-- $3 channel text: the LISTEN channel of repairs
-- reply: one row (the notification's)
WITH ins AS (INSERT INTO cache_repairs (session_id, version) VALUES ($1::uuid, $2::bigint))
SELECT pg_notify($3, $1::uuid::text || ' ' || $2::bigint::text)
