-- run-stream-start: where a reader with no cursor starts: the session's latest run that started, and its last output seq.
-- $1 session text
-- $2 tenant text
-- reply: no row when the session does not exist for the tenant; else output_seq and run (jsonb, null when no run started)
-- output_seq: the session's last seq (agent_sessions_last_seq, migration 064).
SELECT agent_sessions_last_seq(s) AS output_seq, to_jsonb(r) AS run FROM sessions s
LEFT JOIN LATERAL (
  SELECT * FROM runs x WHERE x.tenant_id = s.tenant_id AND x.session_id = s.id AND x.start_seq IS NOT NULL ORDER BY x.start_seq DESC LIMIT 1
) r ON true
WHERE s.tenant_id = $2 AND s.id = $1
