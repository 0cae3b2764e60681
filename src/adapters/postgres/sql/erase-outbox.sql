-- erase-outbox: deletes the events (published or not) that name erased sessions or carry an erased user's session, so no pending event re-publishes erased data; for a whole tenant, its pruned_events horizon too.
-- $1 tenant text
-- $2 userId text: events whose session snapshot names this user; null: every event of the tenant
-- $3 ids jsonb: array of ids of erased sessions (their events go whatever they carry)
-- reply: one row: deleted (count)
WITH del AS (
  DELETE FROM outbox o
  WHERE o.tenant_id = $1 AND (
    $2::text IS NULL
    OR o.session_id IN (SELECT jsonb_array_elements_text($3::jsonb))
    OR o.payload -> 'session' ->> 'user_id' = $2::text)
  RETURNING 1
), horizon AS (
  -- A tenant erased whole leaves no row that names it: its pruned-events horizon goes too.
  DELETE FROM pruned_events p WHERE p.tenant_id = $1 AND $2::text IS NULL
)
SELECT count(*) AS deleted FROM del
