-- session-list-items-desc: a page of a session's history newest first, before a cursor, optionally only its last turns.
-- $1 sessionId text
-- $2 tenant text
-- $3 beforeSeq bigint: the seq of the last item of the previous page; null: from the newest
-- $4 lastTurns integer: only the last N turns; null: every turn
-- $5 limit integer: rows to return
-- reply: no row when the session is not found; otherwise one row per item, newest first (owner = the session's id), or one row with seq null when none
SELECT i.*, s.id AS owner FROM sessions s
-- As session-list-items, read backwards along the same index from the cursor.
LEFT JOIN LATERAL (
  SELECT * FROM session_items
  WHERE tenant_id = s.tenant_id AND session_id = s.id AND ($3::bigint IS NULL OR seq < $3::bigint)
    -- A turn starts at a user message; everything after it belongs to it.
    AND seq >= COALESCE((
      SELECT min(t.seq) FROM (
        SELECT seq FROM session_items
        WHERE $4::int IS NOT NULL AND tenant_id = $2 AND session_id = $1 AND role = 'user' AND type = 'message'
        ORDER BY seq DESC LIMIT $4
      ) t), 0)
  ORDER BY seq DESC
  LIMIT $5
) i ON true
WHERE s.tenant_id = $2 AND s.id = $1
ORDER BY i.seq DESC
