-- run-output-append-group: run-output-append for a group of several runs' batches, without waiting on a busy session.
-- $1 batches jsonb: array of { tenant, session, run, events: array of { type, data } }, at most one batch per session
-- reply: one row for every session locked (tenant_id, id, output_seq, created_at), output_seq its batch's last seq when the batch was stored and null when its run is not running; a session without a row was busy and nothing of its batch was done
-- Sessions are locked in id order, skipping any another transaction holds: one busy session
-- (a long transaction, a slow erase batch) must neither stall the other runs of the group nor
-- keep their rows locked meanwhile. The caller sends a skipped batch again alone, by
-- run-output-append, which waits. Otherwise as run-output-append: the check is on the
-- locked row, so a batch racing a finalization commits before the terminal event or not at all.
WITH input AS (
  SELECT b->>'tenant' AS tenant_id, b->>'session' AS session_id, (b->>'run')::uuid AS run_id, b->'events' AS events
  FROM jsonb_array_elements($1::jsonb) AS b
), cur AS (
  SELECT s.tenant_id, s.id, s.running_run_id FROM sessions s
  WHERE (s.tenant_id, s.id) IN (SELECT tenant_id, session_id FROM input)
  ORDER BY s.tenant_id, s.id
  FOR UPDATE SKIP LOCKED
), allocated AS (
  UPDATE sessions s SET output_seq = s.output_seq + jsonb_array_length(i.events)
  FROM cur JOIN input i ON i.tenant_id = cur.tenant_id AND i.session_id = cur.id AND i.run_id = cur.running_run_id
  WHERE s.tenant_id = cur.tenant_id AND s.id = cur.id
  RETURNING s.tenant_id, s.id, s.output_seq, i.run_id, i.events
), stored AS (
  INSERT INTO run_output (tenant_id, session_id, seq, run_id, type, data)
  SELECT a.tenant_id, a.id, a.output_seq - jsonb_array_length(a.events) + x.ord, a.run_id, x.e->>'type', COALESCE(x.e->'data', 'null'::jsonb)
  FROM allocated a, jsonb_array_elements(a.events) WITH ORDINALITY AS x(e, ord)
)
SELECT cur.tenant_id, cur.id, a.output_seq, now() AS created_at
FROM cur LEFT JOIN allocated a ON a.tenant_id = cur.tenant_id AND a.id = cur.id
