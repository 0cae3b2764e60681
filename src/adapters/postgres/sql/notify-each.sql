-- notify-each: sends one notification per payload on one channel, in one statement.
-- $1 channel text
-- $2 payloads text[]
-- reply: one row per payload
SELECT pg_notify($1, m) FROM unnest($2::text[]) AS m
