-- session-append-items: appends items to a live session's history with the next seqs, guarded like every write, with item.added.
-- $1 tenant text
-- $2 id text
-- $3 expectedRevision bigint: write only at this revision (If-Match); null: any
-- $4 fencingToken bigint: refused when older than the newest handed out; null: none
-- $5 items jsonb: array of {id, role, type, content}, in order
-- $6 notifyChannel text: where near caches hear "<id> <version>" of written sessions; null: not announced
-- reply: one row; written = true, the written row and extra (the items stored, as a jsonb array), or written = false and the current row; no row: not found
WITH cur AS (
  SELECT * FROM sessions WHERE tenant_id = $1 AND id = $2 FOR UPDATE
), upd AS (
  -- Seqs are allocated from the locked row, so they are never reused.
  UPDATE sessions s SET
    version = s.version + 1, updated_at = now(), last_active_at = now(), expires_at = agent_sessions_slide_expiry(s),
    item_seq = s.item_seq + jsonb_array_length($5::jsonb)
  FROM cur
  -- Every guard reads the locked row (cur), never the statement's snapshot of s.
  WHERE s.tenant_id = cur.tenant_id AND s.id = cur.id
    AND agent_sessions_revision_preconditions_hold(cur::sessions, $3::bigint, $4::bigint)
    AND agent_sessions_live(cur::sessions)
  RETURNING s.*
), added AS (
  INSERT INTO session_items (tenant_id, session_id, seq, id, role, type, content)
  SELECT u.tenant_id, u.id, u.item_seq - jsonb_array_length($5::jsonb) + x.ord, (x.elem ->> 'id')::uuid, x.elem ->> 'role',
    x.elem ->> 'type', x.elem -> 'content'
  FROM upd u, jsonb_array_elements($5::jsonb) WITH ORDINALITY AS x(elem, ord)
  RETURNING *
), events AS (
  SELECT u.tenant_id, u.id AS session_id, 1 AS ord, 'item.added' AS type,
    jsonb_build_object('count', jsonb_array_length($5::jsonb), 'first_seq', u.item_seq - jsonb_array_length($5::jsonb) + 1,
      'last_seq', u.item_seq, 'version', u.version) AS payload
  FROM upd u
), emitted AS (
  INSERT INTO outbox (tenant_id, type, session_id, payload)
  SELECT e.tenant_id, e.type, e.session_id, e.payload FROM events e WHERE e.payload IS NOT NULL ORDER BY e.session_id, e.ord
)
-- The near-cache announcement (PostgreSQL-only mode) is sent by the write itself and delivered
-- at commit; without a channel pg_notify is not called at all (a notifying transaction
-- serializes commits).
SELECT true AS written, upd.*, (SELECT jsonb_agg(to_jsonb(a) ORDER BY a.seq) FROM added a) AS extra, CASE WHEN $6::text IS NOT NULL THEN pg_catalog.pg_notify($6, upd.tenant_id || '/' || upd.id || ' ' || upd.version::text) END AS notified FROM upd
UNION ALL
SELECT false, cur.*, NULL, NULL FROM cur WHERE NOT EXISTS (SELECT 1 FROM upd)
