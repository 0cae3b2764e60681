-- run-input-add: stores input for the session's running run (or the one named, if it runs), with its outbox event run.input.
-- $1 session text
-- $2 tenant text
-- $3 run uuid, null for whichever runs
-- $4 data jsonb
-- reply: one row: run (jsonb, with its new input_seq; null when none was running as the statement began) and session_exists; no row when neither
WITH r AS (
  UPDATE runs SET input_seq = input_seq + 1
  WHERE tenant_id = $2 AND session_id = $1 AND status = 'running' AND ($3::uuid IS NULL OR id = $3::uuid)
  RETURNING *
), stored AS (
  INSERT INTO run_inputs (run_id, seq, data) SELECT r.id, r.input_seq, $4::jsonb FROM r
), events AS (
  SELECT r.tenant_id, r.session_id, 1 AS ord, 'run.input' AS type,
    jsonb_build_object('run_id', r.id, 'seq', r.input_seq, 'input', $4::jsonb) AS payload
  FROM r
), emitted AS (
  INSERT INTO outbox (tenant_id, type, session_id, payload)
  SELECT e.tenant_id, e.type, e.session_id, e.payload FROM events e WHERE e.payload IS NOT NULL ORDER BY e.session_id, e.ord
)
SELECT to_jsonb(r) AS run, true AS session_exists FROM r
UNION ALL
SELECT NULL, true FROM sessions WHERE tenant_id = $2 AND id = $1 AND NOT EXISTS (SELECT 1 FROM r)
