-- session-increment-counters: adds to a live session's counters in SQL (never read-then-write), guarded like every write.
-- $1 tenant text
-- $2 id text
-- $3 expectedRevision bigint: write only at this revision (If-Match); null: any
-- $4 fencingToken bigint: refused when older than the newest the row has seen (handed out by a PostgreSQL lease or
--   carried by a write); an accepted one becomes the newest; null: none
-- $5 deltas jsonb: object of counter name (totalTurns, messageCount, totalCostUsd, inputTokens, outputTokens) to a non-negative number
-- reply: one row; written = true and the written row, or written = false and the current row (the
--   columns a session shows, and fence); no row: not found
-- One row visit: the UPDATE takes the row lock and checks the guards in its WHERE. Under READ
-- COMMITTED a row that another write changed meanwhile is re-read at its newest version and
-- the WHERE is evaluated again on it (never on the statement's snapshot). Only when nothing
-- was written does the second branch lock and read the current row, so the caller learns why.
WITH upd AS (
  UPDATE sessions s SET
    fence = GREATEST(s.fence, COALESCE($4::bigint, s.fence)),
    version = s.version + 1, updated_at = now(), last_active_at = now(), expires_at = agent_sessions_slide_expiry(s),
    total_turns = s.total_turns + COALESCE(($5::jsonb ->> 'totalTurns')::numeric, 0),
    message_count = s.message_count + COALESCE(($5::jsonb ->> 'messageCount')::numeric, 0),
    total_cost_usd = s.total_cost_usd + COALESCE(($5::jsonb ->> 'totalCostUsd')::numeric, 0),
    input_tokens = s.input_tokens + COALESCE(($5::jsonb ->> 'inputTokens')::numeric, 0),
    output_tokens = s.output_tokens + COALESCE(($5::jsonb ->> 'outputTokens')::numeric, 0)
  WHERE s.tenant_id = $1 AND s.id = $2
    AND agent_sessions_revision_preconditions_hold(s, $3::bigint, $4::bigint)
    AND agent_sessions_live(s)
  RETURNING s.*
)
-- The columns a session shows and the fence (the row's run and sequence columns are not
-- decoded: every column costs the client and the server).
SELECT true AS written,
  upd.id, upd.tenant_id, upd.user_id, upd.org_id, upd.status, upd.model, upd.title, upd.system_prompt,
  upd.workspace_path, upd.mcp_client_ids, upd.parent_session_id, upd.metadata, upd.total_turns,
  upd.message_count, upd.total_cost_usd, upd.input_tokens, upd.output_tokens, upd.version, upd.revision,
  upd.fence, upd.ttl_seconds, upd.idle_timeout_seconds, upd.created_at, upd.updated_at, upd.last_active_at,
  upd.expires_at, upd.ended_at, upd.end_reason FROM upd
UNION ALL
SELECT false,
  cur.id, cur.tenant_id, cur.user_id, cur.org_id, cur.status, cur.model, cur.title, cur.system_prompt,
  cur.workspace_path, cur.mcp_client_ids, cur.parent_session_id, cur.metadata, cur.total_turns,
  cur.message_count, cur.total_cost_usd, cur.input_tokens, cur.output_tokens, cur.version, cur.revision,
  cur.fence, cur.ttl_seconds, cur.idle_timeout_seconds, cur.created_at, cur.updated_at, cur.last_active_at,
  cur.expires_at, cur.ended_at, cur.end_reason
  FROM (SELECT * FROM sessions WHERE tenant_id = $1 AND id = $2 FOR UPDATE) cur WHERE NOT EXISTS (SELECT 1 FROM upd)
