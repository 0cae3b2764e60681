-- migration-lock: holds the migration advisory lock until the transaction ends, so one instance migrates at a time.
-- $1 key bigint: the lock's key
-- reply: one row
SELECT pg_advisory_xact_lock($1::bigint)
