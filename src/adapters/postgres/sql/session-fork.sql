-- session-fork: creates a session from another of the tenant (settings, counters and a copy of its items under new ids), with session.created.
-- $1 sourceId text
-- $2 tenant text
-- $3 newId text
-- $4 userId text: the fork's user; null: the source's
-- $5 model text: the fork's model; null: the source's
-- $6 title text: the fork's title; null: the source's
-- $7 metadata jsonb: merged into the source's metadata (a key set to null is removed)
-- $8 ttlSeconds integer, null: no sliding expiry
-- $9 absoluteTimeoutSeconds integer, null: no lifetime limit
-- reply: the new row with inserted = true; or the source's row with inserted = false when newId is taken; no row: source not found
-- The source is read on the statement's snapshot, unlocked: its row and its items come from
-- one snapshot, so the copy is consistent (item_seq matches the items copied).
WITH src AS (
  SELECT * FROM sessions WHERE tenant_id = $2 AND id = $1
), ins AS (
  INSERT INTO sessions (id, tenant_id, user_id, org_id, status, model, title, system_prompt, workspace_path,
    mcp_client_ids, parent_session_id, metadata, total_turns, message_count, ttl_seconds, idle_timeout_seconds,
    lifetime_ends_at, expires_at, item_seq)
  SELECT $3::text, src.tenant_id, COALESCE($4, src.user_id), src.org_id, 'idle', COALESCE($5, src.model),
    COALESCE($6, src.title), src.system_prompt, src.workspace_path, src.mcp_client_ids, src.id,
    agent_sessions_merge_metadata(src.metadata, $7::jsonb), src.total_turns, src.message_count, $8::int,
    src.idle_timeout_seconds,
    now() + $9::int * interval '1 second',
    LEAST(now() + $8::int * interval '1 second', now() + $9::int * interval '1 second'),
    src.item_seq
  FROM src
  ON CONFLICT (tenant_id, id) DO NOTHING
  RETURNING *
), copied AS (
  -- client_id is copied too: a framework that re-sends its items to the fork finds them.
  INSERT INTO session_items (tenant_id, session_id, seq, id, client_id, role, type, content, created_at)
  SELECT ins.tenant_id, ins.id, i.seq, gen_random_uuid(), i.client_id, i.role, i.type, i.content, i.created_at
  FROM ins JOIN session_items i ON i.tenant_id = ins.tenant_id AND i.session_id = $1
), events AS (
  SELECT i.tenant_id, i.id AS session_id, 1 AS ord, 'session.created' AS type,
    jsonb_build_object('session', agent_sessions_session_json(i::sessions), 'forked_from', i.parent_session_id) AS payload
  FROM ins i
), emitted AS (
  INSERT INTO outbox (tenant_id, type, session_id, payload)
  SELECT e.tenant_id, e.type, e.session_id, e.payload FROM events e WHERE e.payload IS NOT NULL ORDER BY e.session_id, e.ord
)
SELECT ins.*, true AS inserted FROM ins
UNION ALL
SELECT src.*, false FROM src WHERE NOT EXISTS (SELECT 1 FROM ins)
