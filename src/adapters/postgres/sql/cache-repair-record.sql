-- cache-repair-record: records a cache write Redis missed and announces it ("<tenant>/<id> <version>") to every instance, in one statement.
-- $1 sessionId text
-- $2 version bigint: the version Redis must not serve anything older than
-- $3 channel text: the LISTEN channel of repairs
-- $4 tenant text
-- reply: one row (the notification's)
WITH ins AS (INSERT INTO cache_repairs (tenant_id, session_id, version) VALUES ($4::text, $1::text, $2::bigint))
SELECT pg_notify($3, $4::text || '/' || $1::text || ' ' || $2::bigint::text)
