-- outbox-horizon-writers: the transactions that may still commit events: every writer holds
-- RowExclusiveLock on the outbox from before it draws an id until it ends (this session excluded).
-- reply: one row per transaction, vxid (its virtual transaction id)
SELECT DISTINCT l.virtualtransaction AS vxid
FROM pg_locks l
WHERE l.locktype = 'relation' AND l.granted
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.relation = 'outbox'::regclass
  AND l.mode = 'RowExclusiveLock'
  AND l.pid IS DISTINCT FROM pg_backend_pid()
