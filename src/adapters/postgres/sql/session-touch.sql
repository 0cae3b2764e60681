-- session-touch: marks activity on a live session (sliding expiry), guarded like every write.
-- $1 tenant text
-- $2 id text
-- $3 expectedRevision bigint: write only at this revision (If-Match); null: any
-- $4 fencingToken bigint: refused when older than the newest the row has seen (handed out by a PostgreSQL lease or
--   carried by a write); an accepted one becomes the newest; null: none
-- reply: one row; written = true and the written row, or written = false and the current row; no row: not found
WITH cur AS (
  SELECT * FROM sessions WHERE tenant_id = $1 AND id = $2 FOR UPDATE
), upd AS (
  UPDATE sessions s SET
    fence = GREATEST(s.fence, COALESCE($4::bigint, s.fence)),
    version = s.version + 1, updated_at = now(), last_active_at = now(), expires_at = agent_sessions_slide_expiry(s)
  FROM cur
  -- Every guard reads the locked row (cur), never the statement's snapshot of s.
  WHERE s.tenant_id = cur.tenant_id AND s.id = cur.id
    AND agent_sessions_revision_preconditions_hold(cur::sessions, $3::bigint, $4::bigint)
    AND agent_sessions_live(cur::sessions)
  RETURNING s.*
)
SELECT true AS written, upd.* FROM upd
UNION ALL
SELECT false, cur.* FROM cur WHERE NOT EXISTS (SELECT 1 FROM upd)
