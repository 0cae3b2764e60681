-- session-increment-counters-many: session-increment-counters for several sessions in one statement, so concurrent increments share one round trip and one commit.
-- $1 increments jsonb: array of { tenant, id, expectedRevision, fencingToken, deltas }, as session-increment-counters'
--   parameters; at most one per tenant and id
-- reply: the written rows (the columns a session shows, and fence); an increment without its row was not written (its
--   session is busy in another transaction, refuses a guard, or is not there), and its caller sends it alone by
--   session-increment-counters, which waits for the row and says why
-- Rows are locked in key order, skipping any another transaction holds, so two groups cannot
-- deadlock and one busy session does not stall the others. The guards are in the UPDATE's
-- WHERE, which PostgreSQL evaluates again on the newest version of a row changed meanwhile.
WITH input AS (
  SELECT * FROM jsonb_to_recordset($1::jsonb)
    AS r("tenant" text, "id" text, "expectedRevision" bigint, "fencingToken" bigint, "deltas" jsonb)
), locked AS (
  SELECT s.tenant_id, s.id FROM sessions s
  WHERE (s.tenant_id, s.id) IN (SELECT "tenant", "id" FROM input)
  ORDER BY s.tenant_id, s.id
  FOR UPDATE SKIP LOCKED
), upd AS (
  UPDATE sessions s SET
    fence = GREATEST(s.fence, COALESCE(i."fencingToken", s.fence)),
    version = s.version + 1, updated_at = now(), last_active_at = now(), expires_at = agent_sessions_slide_expiry(s),
    total_turns = s.total_turns + COALESCE((i."deltas" ->> 'totalTurns')::numeric, 0),
    message_count = s.message_count + COALESCE((i."deltas" ->> 'messageCount')::numeric, 0),
    total_cost_usd = s.total_cost_usd + COALESCE((i."deltas" ->> 'totalCostUsd')::numeric, 0),
    input_tokens = s.input_tokens + COALESCE((i."deltas" ->> 'inputTokens')::numeric, 0),
    output_tokens = s.output_tokens + COALESCE((i."deltas" ->> 'outputTokens')::numeric, 0)
  FROM locked l JOIN input i ON i."tenant" = l.tenant_id AND i."id" = l.id
  WHERE s.tenant_id = l.tenant_id AND s.id = l.id
    AND agent_sessions_revision_preconditions_hold(s, i."expectedRevision", i."fencingToken")
    AND agent_sessions_live(s)
  RETURNING s.*
)
SELECT upd.id, upd.tenant_id, upd.user_id, upd.org_id, upd.status, upd.model, upd.title, upd.system_prompt,
  upd.workspace_path, upd.mcp_client_ids, upd.parent_session_id, upd.metadata, upd.total_turns,
  upd.message_count, upd.total_cost_usd, upd.input_tokens, upd.output_tokens, upd.version, upd.revision,
  upd.fence, upd.ttl_seconds, upd.idle_timeout_seconds, upd.created_at, upd.updated_at, upd.last_active_at,
  upd.expires_at, upd.ended_at, upd.end_reason FROM upd
