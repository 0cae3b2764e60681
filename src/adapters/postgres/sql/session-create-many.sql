-- session-create-many: session-create for several sessions in one statement, so concurrent creates share one round trip and one commit.
-- $1 sessions jsonb: array of { tenant, id, userId, orgId, status, model, title, systemPrompt, workspacePath,
--   mcpClientIds (the JSON text of an array of strings), parentSessionId, metadata (the JSON text of an object),
--   ttlSeconds, idleTimeoutSeconds, absoluteTimeoutSeconds }, as session-create's parameters; at most one per
--   tenant and id
-- reply: as session-create, one row for each session inserted; a session without its row: the id was taken or the
--   parent was not found
-- The parent check reads the statement's snapshot, like session-create's: a parent created in
-- the same statement is not seen, so the caller sends a create refused here alone once more
-- when it names a parent. Rows are inserted in key order, so two groups that race on the same
-- ids wait for each other in one order and cannot deadlock.
WITH input AS (
  SELECT * FROM jsonb_to_recordset($1::jsonb) AS r("tenant" text, "id" text, "userId" text, "orgId" text,
    "status" text, "model" text, "title" text, "systemPrompt" text, "workspacePath" text, "mcpClientIds" text,
    "parentSessionId" text, "metadata" text, "ttlSeconds" int, "idleTimeoutSeconds" int, "absoluteTimeoutSeconds" int)
), ins AS (
  INSERT INTO sessions (id, tenant_id, user_id, org_id, status, model, title, system_prompt, workspace_path,
    mcp_client_ids, parent_session_id, metadata, ttl_seconds, idle_timeout_seconds, lifetime_ends_at, expires_at)
  SELECT r."id", r."tenant", r."userId", r."orgId", r."status", r."model", r."title", r."systemPrompt", r."workspacePath",
    ARRAY(SELECT jsonb_array_elements_text(r."mcpClientIds"::jsonb)), r."parentSessionId", r."metadata"::jsonb, r."ttlSeconds",
    r."idleTimeoutSeconds", now() + r."absoluteTimeoutSeconds" * interval '1 second',
    LEAST(now() + r."ttlSeconds" * interval '1 second', now() + r."absoluteTimeoutSeconds" * interval '1 second')
  FROM input r
  WHERE r."parentSessionId" IS NULL
    OR EXISTS (SELECT 1 FROM sessions p WHERE p.tenant_id = r."tenant" AND p.id = r."parentSessionId")
  ORDER BY r."tenant", r."id"
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
SELECT ins.id, ins.tenant_id, ins.user_id, ins.org_id, ins.status, ins.model, ins.title, ins.system_prompt,
  ins.workspace_path, ins.mcp_client_ids, ins.parent_session_id, ins.metadata, ins.version,
  ins.ttl_seconds, ins.idle_timeout_seconds, ins.created_at, ins.expires_at FROM ins
