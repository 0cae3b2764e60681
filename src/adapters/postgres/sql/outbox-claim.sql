-- outbox-claim: one relay's batch: up to `limit` unpublished events in id order, none held by
-- another relay and none of a session another relay is publishing; each session's events
-- start at its lowest unpublished one (docs/events.md, "The relay").
-- $1 lockClass int: the advisory-lock class "a relay is publishing this session's events"
-- $2 limit int
-- reply: the rows (id, type, tenant_id, session_id, payload, created_at) in id order; the row
-- and session locks are held to the end of the transaction
WITH claimed AS MATERIALIZED (
  -- The walk: takes each event's session, or skips the event while another relay holds it.
  SELECT o.id, o.tenant_id, o.session_id
  FROM outbox o
  WHERE o.published_at IS NULL
    AND (o.session_id IS NULL OR pg_try_advisory_xact_lock($1::int, hashtext(o.tenant_id || '/' || o.session_id)))
  ORDER BY o.id
  LIMIT $2
  FOR UPDATE OF o SKIP LOCKED
)
-- A relay whose publish failed can free a session between the walk passing its earliest event
-- and reaching a later one, so the batch is read once every session in it is held: all their
-- unpublished events up to the last one claimed. FOR UPDATE re-reads a row marked since this
-- statement began, which then drops out.
SELECT o.id, o.type, o.tenant_id, o.session_id, o.payload, o.created_at
FROM outbox o
WHERE o.published_at IS NULL
  AND o.id <= (SELECT max(c.id) FROM claimed c)
  AND ((o.tenant_id, o.session_id) IN (SELECT c.tenant_id, c.session_id FROM claimed c WHERE c.session_id IS NOT NULL)
       OR o.id IN (SELECT c.id FROM claimed c WHERE c.session_id IS NULL))
ORDER BY o.id
LIMIT $2
FOR UPDATE OF o
