-- outbox-claim: locks up to `limit` unpublished events for one relay, in id order, skipping rows
-- another relay holds and every event of a session another relay is publishing.
-- $1 lockClass int: the advisory-lock class "a relay is publishing this session's events"
-- $2 limit int
-- reply: the claimed rows, in id order; locks (rows and sessions) are held to the end of the transaction
SELECT o.id, o.type, o.tenant_id, o.session_id, o.payload, o.created_at
FROM outbox o
WHERE o.published_at IS NULL
  AND (o.session_id IS NULL OR pg_try_advisory_xact_lock($1::int, hashtext(o.session_id::text)))
ORDER BY o.id
LIMIT $2
FOR UPDATE OF o SKIP LOCKED
