-- run-output-read: archived output of a session after a seq, in order.
-- $1 session text
-- $2 after bigint
-- $3 limit integer
-- $4 tenant text
-- reply: no row when the session no longer exists; else one row per event (seq null when there is none)
SELECT o.seq, o.run_id, o.type, o.data, o.created_at FROM sessions s
LEFT JOIN LATERAL (
  SELECT * FROM run_output x WHERE x.tenant_id = s.tenant_id AND x.session_id = s.id AND x.seq > $2 ORDER BY x.seq LIMIT $3
) o ON true
WHERE s.tenant_id = $4 AND s.id = $1 ORDER BY o.seq
