-- session-increment-counters-many: session-increment-counters for several sessions in one statement, so concurrent increments share one round trip and one commit.
-- $1 increments jsonb: array of { tenant, id, expectedRevision, fencingToken, deltas }, as session-increment-counters'
--   parameters; at most one per tenant and id
-- reply: the written rows (the columns a session shows, and fence); an increment without its row was not written (its
--   session is busy in another transaction, refuses a guard, or is not there), and its caller sends it alone by
--   session-increment-counters, which waits for the row and says why
-- Rows are locked in key order, skipping any another transaction holds, so two groups cannot
-- deadlock and one busy session does not stall the others. The guards are in the UPDATE's
-- WHERE, which PostgreSQL evaluates again on the newest version of a row changed meanwhile.
-- The list is read with agent_sessions_each and joined to sessions once, by primary key
-- (migration 065): one probe per increment, whatever the table holds.
WITH input AS (
  SELECT r.* FROM agent_sessions_each($1::jsonb) AS e,
    jsonb_to_record(e) AS r("tenant" text, "id" text, "expectedRevision" bigint, "fencingToken" bigint, "deltas" jsonb)
), locked AS (
  SELECT s.tenant_id, s.id, i."expectedRevision", i."fencingToken", i."deltas"
  FROM input i JOIN sessions s ON s.tenant_id = i."tenant" AND s.id = i."id"
  ORDER BY s.tenant_id, s.id
  FOR UPDATE OF s SKIP LOCKED
), upd AS (
  UPDATE sessions s SET
    fence = GREATEST(s.fence, COALESCE(l."fencingToken", s.fence)),
    version = s.version + 1, updated_at = now(), last_active_at = now(), expires_at = agent_sessions_slide_expiry(s),
    total_turns = s.total_turns + COALESCE((l."deltas" ->> 'totalTurns')::numeric, 0),
    message_count = s.message_count + COALESCE((l."deltas" ->> 'messageCount')::numeric, 0),
    total_cost_usd = s.total_cost_usd + COALESCE((l."deltas" ->> 'totalCostUsd')::numeric, 0),
    input_tokens = s.input_tokens + COALESCE((l."deltas" ->> 'inputTokens')::numeric, 0),
    output_tokens = s.output_tokens + COALESCE((l."deltas" ->> 'outputTokens')::numeric, 0)
  FROM locked l
  WHERE s.tenant_id = l.tenant_id AND s.id = l.id
    AND agent_sessions_revision_preconditions_hold(s, l."expectedRevision", l."fencingToken")
    AND agent_sessions_live(s)
  RETURNING s.*
)
SELECT upd.id, upd.tenant_id, upd.user_id, upd.org_id, upd.status, upd.model, upd.title, upd.system_prompt,
  upd.workspace_path, upd.mcp_client_ids, upd.parent_session_id, upd.metadata, upd.total_turns,
  upd.message_count, upd.total_cost_usd, upd.input_tokens, upd.output_tokens, upd.version, upd.revision,
  upd.fence, upd.ttl_seconds, upd.idle_timeout_seconds, upd.created_at, upd.updated_at, upd.last_active_at,
  upd.expires_at, upd.ended_at, upd.end_reason FROM upd
