-- session-create: inserts a new session and writes its session.created event.
-- $1 id text
-- $2 tenant text
-- $3 userId text, null for none
-- $4 orgId text, null for none
-- $5 status text: initializing or idle
-- $6 model text, null for none
-- $7 title text, null for none
-- $8 systemPrompt text, null for none
-- $9 workspacePath text, null for none
-- $10 mcpClientIds jsonb: array of strings
-- $11 parentSessionId text, null for none; must be a session of the tenant
-- $12 metadata jsonb: object
-- $13 ttlSeconds integer, null: no sliding expiry
-- $14 idleTimeoutSeconds integer, null: no idle timeout
-- $15 absoluteTimeoutSeconds integer, null: no lifetime limit
-- reply: the new row's columns that a session shows, less those the insert leaves at their defaults
--   (counters 0, revision 1, updated_at and last_active_at = created_at, not ended: rows.ts
--   createdRowToSession);
--   no row when the id is taken or the parent is not found
WITH ins AS (
  INSERT INTO sessions (id, tenant_id, user_id, org_id, status, model, title, system_prompt, workspace_path,
    mcp_client_ids, parent_session_id, metadata, ttl_seconds, idle_timeout_seconds, lifetime_ends_at, expires_at)
  SELECT $1::text, $2, $3, $4, $5, $6, $7, $8, $9,
    ARRAY(SELECT jsonb_array_elements_text($10::jsonb)), $11::text, $12::jsonb, $13::int, $14::int,
    now() + $15::int * interval '1 second',
    LEAST(now() + $13::int * interval '1 second', now() + $15::int * interval '1 second')
  WHERE $11::text IS NULL OR EXISTS (SELECT 1 FROM sessions p WHERE p.tenant_id = $2 AND p.id = $11::text)
  ON CONFLICT (tenant_id, id) DO NOTHING
  RETURNING *
), events AS (
  SELECT i.tenant_id, i.id AS session_id, 1 AS ord, 'session.created' AS type,
    jsonb_build_object('session', agent_sessions_session_json(i::sessions)) AS payload
  FROM ins i
), emitted AS (
  INSERT INTO outbox (tenant_id, type, session_id, payload)
  SELECT e.tenant_id, e.type, e.session_id, e.payload FROM events e WHERE e.payload IS NOT NULL ORDER BY e.session_id, e.ord
)
-- Only the columns the caller cannot know: every column decoded costs the client and the server.
SELECT ins.id, ins.tenant_id, ins.user_id, ins.org_id, ins.status, ins.model, ins.title, ins.system_prompt,
  ins.workspace_path, ins.mcp_client_ids, ins.parent_session_id, ins.metadata, ins.version,
  ins.ttl_seconds, ins.idle_timeout_seconds, ins.created_at, ins.expires_at FROM ins
