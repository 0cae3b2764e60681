-- session-terminate: ends a session that is not terminated yet (an ended one too), and writes its events.
-- $1 tenant text
-- $2 id text
-- $3 expectedRevision bigint: write only at this revision (If-Match); null: any
-- $4 fencingToken bigint: refused when older than the newest the row has seen (handed out by a PostgreSQL lease or
--   carried by a write); an accepted one becomes the newest; null: none
-- $5 reason text: the end_reason
-- reply: one row; written = true and the written row, or written = false and the current row; no row: not found
WITH cur AS (
  SELECT * FROM sessions WHERE tenant_id = $1 AND id = $2 FOR UPDATE
), upd AS (
  UPDATE sessions s SET
    fence = GREATEST(s.fence, COALESCE($4::bigint, s.fence)),
    version = s.version + 1, revision = s.revision + 1, updated_at = now(), status = 'terminated', ended_at = now(), end_reason = $5
  FROM cur
  -- Every guard reads the locked row (cur), never the statement's snapshot of s.
  WHERE s.tenant_id = cur.tenant_id AND s.id = cur.id
    AND agent_sessions_revision_preconditions_hold(cur::sessions, $3::bigint, $4::bigint)
    AND cur.status <> 'terminated'
  RETURNING s.*
), events AS (
  SELECT u.tenant_id, u.id AS session_id, e.ord, e.type, e.payload
  FROM upd u JOIN cur ON cur.tenant_id = u.tenant_id AND cur.id = u.id CROSS JOIN LATERAL (VALUES
    (1, 'session.status_changed', jsonb_build_object('from', cur.status, 'to', u.status, 'version', u.version)),
    (2, 'session.terminated', jsonb_build_object('reason', u.end_reason, 'version', u.version))
  ) AS e(ord, type, payload)
), emitted AS (
  INSERT INTO outbox (tenant_id, type, session_id, payload)
  SELECT e.tenant_id, e.type, e.session_id, e.payload FROM events e WHERE e.payload IS NOT NULL ORDER BY e.session_id, e.ord
)
SELECT true AS written, upd.* FROM upd
UNION ALL
SELECT false, cur.* FROM cur WHERE NOT EXISTS (SELECT 1 FROM upd)
