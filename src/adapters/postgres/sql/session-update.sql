-- session-update: applies a patch to a live session, each field only when the patch has it, and writes its events.
-- $1 tenant text
-- $2 id text
-- $3 expectedRevision bigint: write only at this revision (If-Match); null: any
-- $4 fencingToken bigint: refused when older than the newest the row has seen (handed out by a PostgreSQL lease or
--   carried by a write); an accepted one becomes the newest; null: none
-- $5 patch jsonb: the UpdateSessionInput (camelCase keys), also the `changes` of session.updated
-- $6 allowedFrom jsonb: the statuses patch.status may be reached from (array); null when the patch sets no status
-- $7 metadataLimit integer: most bytes the merged metadata's JSON text may take; null: no limit
-- reply: one row; written = true and the written row, or written = false, the current row and within_limits (false: the merged metadata is too large); no row: not found
WITH cur AS (
  SELECT * FROM sessions WHERE tenant_id = $1 AND id = $2 FOR UPDATE
), nxt AS (
  -- The locked row's metadata with the patch's merged in, and whether it fits (OFFSET 0 keeps
  -- the subquery from being flattened, which would merge once per reference).
  SELECT m.metadata, (NOT $5::jsonb ? 'metadata' OR $7::int IS NULL OR octet_length(m.metadata::text) <= $7::int) AS within_limits
  FROM cur, LATERAL (SELECT agent_sessions_merge_metadata(cur.metadata, $5::jsonb -> 'metadata') AS metadata OFFSET 0) m
), upd AS (
  UPDATE sessions s SET
    fence = GREATEST(s.fence, COALESCE($4::bigint, s.fence)),
    -- A client's write to its own fields: the revision (the ETag) goes up with the version.
    version = s.version + 1, revision = s.revision + 1, updated_at = now(), last_active_at = now(),
    expires_at = agent_sessions_slide_expiry(s),
    status = CASE WHEN $5::jsonb ? 'status' THEN $5::jsonb ->> 'status' ELSE s.status END,
    model = CASE WHEN $5::jsonb ? 'model' THEN $5::jsonb ->> 'model' ELSE s.model END,
    title = CASE WHEN $5::jsonb ? 'title' THEN $5::jsonb ->> 'title' ELSE s.title END,
    system_prompt = CASE WHEN $5::jsonb ? 'systemPrompt' THEN $5::jsonb ->> 'systemPrompt' ELSE s.system_prompt END,
    workspace_path = CASE WHEN $5::jsonb ? 'workspacePath' THEN $5::jsonb ->> 'workspacePath' ELSE s.workspace_path END,
    mcp_client_ids = CASE WHEN $5::jsonb ? 'mcpClientIds'
      THEN ARRAY(SELECT jsonb_array_elements_text($5::jsonb -> 'mcpClientIds')) ELSE s.mcp_client_ids END,
    metadata = nxt.metadata,
    idle_timeout_seconds = CASE WHEN $5::jsonb ? 'idleTimeoutSeconds'
      THEN ($5::jsonb ->> 'idleTimeoutSeconds')::int ELSE s.idle_timeout_seconds END,
    -- A change to an ended status ends the session; a reason set earlier stays.
    ended_at = CASE WHEN $5::jsonb ->> 'status' IN ('terminated', 'failed', 'expired') THEN now() ELSE s.ended_at END,
    end_reason = CASE WHEN $5::jsonb ->> 'status' IN ('terminated', 'failed', 'expired')
      THEN COALESCE(s.end_reason, $5::jsonb ->> 'status') ELSE s.end_reason END
  FROM cur, nxt
  -- Every guard reads the locked row (cur), never the statement's snapshot of s.
  WHERE s.tenant_id = cur.tenant_id AND s.id = cur.id
    AND agent_sessions_revision_preconditions_hold(cur::sessions, $3::bigint, $4::bigint)
    AND agent_sessions_live(cur::sessions)
    AND ($6::jsonb IS NULL OR $6::jsonb ? cur.status)
    AND nxt.within_limits
  RETURNING s.*
), events AS (
  SELECT u.tenant_id, u.id AS session_id, e.ord, e.type, e.payload
  FROM upd u JOIN cur ON cur.tenant_id = u.tenant_id AND cur.id = u.id CROSS JOIN LATERAL (VALUES
    (1, 'session.updated', jsonb_build_object('version', u.version, 'revision', u.revision, 'changes', $5::jsonb)),
    (2, 'session.status_changed', CASE WHEN cur.status <> u.status THEN
      jsonb_build_object('from', cur.status, 'to', u.status, 'version', u.version) END),
    (3, 'session.terminated', CASE WHEN u.status = 'terminated' THEN
      jsonb_build_object('session', agent_sessions_session_json(u::sessions)) END)
  ) AS e(ord, type, payload)
), emitted AS (
  INSERT INTO outbox (tenant_id, type, session_id, payload)
  SELECT e.tenant_id, e.type, e.session_id, e.payload FROM events e WHERE e.payload IS NOT NULL ORDER BY e.session_id, e.ord
)
SELECT true AS written, upd.*, true AS within_limits FROM upd
UNION ALL
SELECT false, cur.*, nxt.within_limits FROM cur, nxt WHERE NOT EXISTS (SELECT 1 FROM upd)
