-- run-output-append: allocates contiguous seqs and archives batches of several runs' output in one commit, each only while its run is its session's running run.
-- $1 batches jsonb: array of { tenant, session, run, events: array of { type, data } }, at most one batch per session
-- reply: one row per batch stored (tenant_id, id, output_seq: the batch's last seq, created_at: its events'); none for a batch whose run is not running.
-- A batch's events got the seqs output_seq - n + 1 .. output_seq in their order: the caller has them, so they do not come back.
-- One batch alone (the archive's groups of several go by run-output-append-group, which does
-- not wait on a busy session); it takes the same batches array. Sessions are locked in id
-- order, so two overlapping statements never deadlock. The check is on the locked session row (cur), not the UPDATE's
-- snapshot of it: a finalization that ended a run holds and changes that row, so a batch
-- racing it commits before the terminal event or not at all.
WITH input AS (
  SELECT b->>'tenant' AS tenant_id, b->>'session' AS session_id, (b->>'run')::uuid AS run_id, b->'events' AS events
  FROM jsonb_array_elements($1::jsonb) AS b
), cur AS (
  SELECT s.tenant_id, s.id, s.running_run_id FROM sessions s
  WHERE (s.tenant_id, s.id) IN (SELECT tenant_id, session_id FROM input)
  ORDER BY s.tenant_id, s.id
  FOR UPDATE
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
-- created_at: the rows' default, now(), is the transaction's start, the same for every row.
SELECT tenant_id, id, output_seq, now() AS created_at FROM allocated
