-- run-stream-start: where a reader with no cursor starts: the session's latest run that started, and its last output seq.
-- $1 session text
-- $2 tenant text
-- reply: no row when the session does not exist for the tenant; else output_seq and run (jsonb, null when no run started)
-- output_seq: the row's, or the running run's last appended event's when later (as run-state).
SELECT GREATEST(s.output_seq, (SELECT max(o.seq) FROM run_output o WHERE o.tenant_id = s.tenant_id AND o.session_id = s.id)) AS output_seq, to_jsonb(r) AS run FROM sessions s
LEFT JOIN LATERAL (
  SELECT * FROM runs x WHERE x.tenant_id = s.tenant_id AND x.session_id = s.id AND x.start_seq IS NOT NULL ORDER BY x.start_seq DESC LIMIT 1
) r ON true
WHERE s.tenant_id = $2 AND s.id = $1
