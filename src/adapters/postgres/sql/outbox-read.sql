-- outbox-read: one tenant's events after a cursor and up to a bound, in id order (the event feed), with the tenant's pruned horizon.
-- $1 tenant text
-- $2 after bigint: exclusive lower bound (the last id delivered)
-- $3 upTo bigint: inclusive upper bound (the horizon)
-- $4 types jsonb: array of event types, null for every type
-- $5 session text, null for every session
-- $6 limit int
-- reply: the rows (pruned_through, id, type, tenant_id, session_id, payload, created_at); at least one row: with id null when no event matched.
-- pruned_through: the highest id the outbox retention deleted for the tenant (0: none); events are read after it, in the same snapshot, so a reader never skips one unannounced.
WITH p AS (SELECT COALESCE((SELECT x.through FROM pruned_events x WHERE x.tenant_id = $1), 0) AS through)
SELECT p.through AS pruned_through, o.id, o.type, o.tenant_id, o.session_id, o.payload, o.created_at
FROM p LEFT JOIN LATERAL (
  SELECT o.id, o.type, o.tenant_id, o.session_id, o.payload, o.created_at
  FROM outbox o
  WHERE o.tenant_id = $1
    AND o.id > GREATEST($2::bigint, p.through)
    AND o.id <= $3::bigint
    AND ($4::jsonb IS NULL OR o.type IN (SELECT jsonb_array_elements_text($4::jsonb)))
    AND ($5::text IS NULL OR o.session_id = $5::text)
  ORDER BY o.id
  LIMIT $6
) o ON true
ORDER BY o.id
