-- run-output-append: archives batches of several runs' output in one commit, each only while its run is its session's running run, at the seqs that follow the events its run archived before.
-- $1 batches jsonb: array of { tenant, session, run, owner, offset, events: array of { type, data } }, at most one batch per session; owner: the instance that sends it; offset: events of the run archived before this batch
-- reply: one row per batch stored (tenant_id, id, output_seq: the batch's last seq, created_at: its events'); none for a batch whose run is not running.
-- A batch's events got the seqs output_seq - n + 1 .. output_seq in their order: the caller has them, so they do not come back.
-- One batch alone (the archive's groups of several go by run-output-append-group, which does
-- not wait on a busy session); it takes the same batches array. A run's events take the seqs
-- after its start event (start_seq + offset + 1, ...): while it runs, its writer is the only one
-- that writes its session's output, one batch at a time, so the seqs need no counter and the
-- session row is not written. It is locked FOR KEY SHARE, in id order (two overlapping statements
-- never deadlock), and the check is on the locked row (cur), not a snapshot of it: a
-- finalization that ends the run holds and changes that row, so a batch racing it commits
-- before the terminal event or not at all. A seq already archived while the run still runs
-- is this batch's own: its statement committed and the reply was lost, and the writer sent it
-- again with the same offset. That event is not written again (ON CONFLICT DO NOTHING): a
-- retried batch is stored once, at the same seqs. The batch's owner must be the run's: a run
-- whose owner was lost and that restarted elsewhere (same run, new start_seq) refuses a batch
-- of the lost owner's writer, whose offset counts from the run's earlier start.
-- The list is read with agent_sessions_each and joined to each table once, in a chain: one
-- primary-key probe per batch, whatever the tables hold (migration 065).
-- created_at: the rows' default, now(), is the transaction's start, the same for every row.
WITH input AS (
  SELECT b->>'tenant' AS tenant_id, b->>'session' AS session_id, (b->>'run')::uuid AS run_id, b->>'owner' AS owner, (b->>'offset')::bigint AS off, b->'events' AS events
  FROM agent_sessions_each($1::jsonb) AS b
), cur AS (
  SELECT s.tenant_id, s.id, s.running_run_id, i.run_id, i.owner, i.off, i.events
  FROM input i JOIN sessions s ON s.tenant_id = i.tenant_id AND s.id = i.session_id
  ORDER BY s.tenant_id, s.id
  FOR KEY SHARE OF s
), allocated AS (
  SELECT c.tenant_id, c.id, c.run_id, c.events, r.start_seq + c.off AS base
  FROM cur c JOIN runs r ON r.id = c.run_id AND r.owner = c.owner AND c.running_run_id = c.run_id
), stored AS (
  INSERT INTO run_output (tenant_id, session_id, seq, run_id, type, data)
  SELECT a.tenant_id, a.id, a.base + x.ord, a.run_id, x.e->>'type', COALESCE(x.e->'data', 'null'::jsonb)
  FROM allocated a, jsonb_array_elements(a.events) WITH ORDINALITY AS x(e, ord)
  ON CONFLICT (tenant_id, session_id, seq) DO NOTHING
)
SELECT tenant_id, id, base + jsonb_array_length(events) AS output_seq, now() AS created_at FROM allocated
