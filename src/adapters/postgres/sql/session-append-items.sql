-- session-append-items: appends items to a live session's history with the next seqs, guarded like every write, with item.added; an item whose client_id the session holds answers the stored item when its body (role, type, content) is the same, and replaces it in place (same seq) when not, with item.updated.
-- $1 tenant text
-- $2 id text
-- $3 expectedRevision bigint: write only at this revision (If-Match); null: any
-- $4 fencingToken bigint: refused when older than the newest the row has seen (handed out by a PostgreSQL lease or
--   carried by a write); an accepted one becomes the newest; null: none
-- $5 items jsonb: array of {id, client_id, role, type, content} (client_id and role may be null; no client_id twice), in order
-- reply: one row; written = true, the row (written, or as it was when every item was already stored: nothing is written then) and extra (the batch's items as stored, in the batch's order, as a jsonb array), or written = false and the current row; no row: not found
WITH cur AS (
  SELECT * FROM sessions WHERE tenant_id = $1 AND id = $2 FOR UPDATE
), ok AS (
  -- Every guard reads the locked row (cur), never the statement's snapshot of it.
  SELECT * FROM cur
  WHERE agent_sessions_revision_preconditions_hold(cur::sessions, $3::bigint, $4::bigint)
    AND agent_sessions_live(cur::sessions)
), stored AS (
  -- Read after the lock (migration 053), so a retry that waited for a concurrent append of the
  -- same client_id sees that item and answers it.
  SELECT r.item FROM ok, jsonb_array_elements(agent_sessions_items_by_client_id(ok.tenant_id, ok.id, $5::jsonb)) AS r(item)
), batch AS (
  SELECT x.ord, x.elem, st.item AS stored,
    CASE
      WHEN st.item IS NULL THEN 'new'
      WHEN st.item -> 'role' IS NOT DISTINCT FROM x.elem -> 'role' AND st.item -> 'type' IS NOT DISTINCT FROM x.elem -> 'type'
        AND st.item -> 'content' IS NOT DISTINCT FROM x.elem -> 'content' THEN 'same'
      ELSE 'replaced'
    END AS kind
  FROM jsonb_array_elements($5::jsonb) WITH ORDINALITY AS x(elem, ord)
  LEFT JOIN stored st ON st.item ->> 'client_id' = x.elem ->> 'client_id'
), planned AS (
  -- New items take the next seqs, from the locked row, in the batch's order, so seqs are never
  -- reused; a stored item keeps its own.
  SELECT b.ord, b.elem, b.stored, b.kind,
    CASE WHEN b.kind = 'new'
      THEN ok.item_seq + count(*) FILTER (WHERE b.kind = 'new') OVER (ORDER BY b.ord)
      ELSE (b.stored ->> 'seq')::bigint
    END AS seq
  FROM batch b, ok
), upd AS (
  -- A batch whose every item is already stored writes nothing: no version, no event.
  UPDATE sessions s SET
    fence = GREATEST(s.fence, COALESCE($4::bigint, s.fence)),
    version = s.version + 1, updated_at = now(), last_active_at = now(), expires_at = agent_sessions_slide_expiry(s),
    item_seq = ok.item_seq + (SELECT count(*) FROM planned p WHERE p.kind = 'new')
  FROM ok
  WHERE s.tenant_id = ok.tenant_id AND s.id = ok.id AND EXISTS (SELECT 1 FROM planned p WHERE p.kind <> 'same')
  RETURNING s.*
), added AS (
  INSERT INTO session_items (tenant_id, session_id, seq, id, client_id, role, type, content)
  SELECT u.tenant_id, u.id, p.seq, (p.elem ->> 'id')::uuid, p.elem ->> 'client_id', p.elem ->> 'role', p.elem ->> 'type', p.elem -> 'content'
  FROM upd u, planned p
  WHERE p.kind = 'new'
  RETURNING *
), replaced AS (
  -- Through a function: the stored item may be newer than this statement's snapshot.
  SELECT r.item
  FROM upd u, jsonb_array_elements(agent_sessions_replace_items(u.tenant_id, u.id,
    (SELECT jsonb_agg(p.elem || jsonb_build_object('seq', p.seq)) FROM planned p WHERE p.kind = 'replaced'))) AS r(item)
), answer AS (
  SELECT jsonb_agg(COALESCE(to_jsonb(a), r.item, p.stored) ORDER BY p.ord) AS items
  FROM planned p
  LEFT JOIN added a ON p.kind = 'new' AND a.seq = p.seq
  LEFT JOIN replaced r ON p.kind = 'replaced' AND (r.item ->> 'seq')::bigint = p.seq
), events AS (
  SELECT u.tenant_id, u.id AS session_id, 1 AS ord, 'item.added' AS type,
    CASE WHEN n.added > 0 THEN jsonb_build_object('count', n.added, 'first_seq', u.item_seq - n.added + 1,
      'last_seq', u.item_seq, 'version', u.version) END AS payload
  FROM upd u, (SELECT count(*) AS added FROM planned p WHERE p.kind = 'new') n
  UNION ALL
  SELECT u.tenant_id, u.id, 2, 'item.updated',
    CASE WHEN n.seqs IS NOT NULL THEN jsonb_build_object('count', jsonb_array_length(n.seqs), 'seqs', n.seqs,
      'version', u.version) END
  FROM upd u, (SELECT jsonb_agg(p.seq ORDER BY p.seq) AS seqs FROM planned p WHERE p.kind = 'replaced') n
), emitted AS (
  INSERT INTO outbox (tenant_id, type, session_id, payload)
  SELECT e.tenant_id, e.type, e.session_id, e.payload FROM events e WHERE e.payload IS NOT NULL ORDER BY e.session_id, e.ord
)
SELECT true AS written, upd.*, (SELECT items FROM answer) AS extra FROM upd
UNION ALL
SELECT true, ok.*, (SELECT items FROM answer) FROM ok WHERE NOT EXISTS (SELECT 1 FROM upd)
UNION ALL
SELECT false, cur.*, NULL FROM cur WHERE NOT EXISTS (SELECT 1 FROM ok)
