-- notify: sends one notification (delivered when the statement's transaction commits).
-- $1 channel text
-- $2 payload text
-- reply: one row
SELECT pg_notify($1, $2)
