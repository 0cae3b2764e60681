-- run-output-append-group: run-output-append for a group of several runs' batches, without waiting on a busy session.
-- $1 batches jsonb: array of { tenant, session, run, owner, offset, events: array of { type, data } }, at most one batch per session; owner: the instance that sends it; offset: events of the run archived before this batch
-- reply: one row for every session locked (tenant_id, id, output_seq, created_at), output_seq its batch's last seq when the batch was stored and null when its run is not running; a session without a row was busy and nothing of its batch was done
-- Sessions are locked in id order, skipping any another transaction holds (a finalization, a
-- long transaction, a slow erase batch): one busy session must neither stall the other runs of
-- the group nor keep their rows locked meanwhile. The caller sends a skipped batch again alone,
-- by run-output-append, which waits. Otherwise as run-output-append: seqs after the run's
-- start event, the session row locked FOR KEY SHARE and not written, the check on the locked
-- row, so a batch racing a finalization commits before the terminal event or not at all, a
-- batch sent again after a lost reply is stored once, and one of a lost owner is refused.
-- The list is read with agent_sessions_each and joined to each table once, in a chain (input,
-- its session by primary key, its run by primary key): one probe per batch, whatever the
-- tables hold (migration 065).
WITH input AS (
  SELECT b->>'tenant' AS tenant_id, b->>'session' AS session_id, (b->>'run')::uuid AS run_id, b->>'owner' AS owner, (b->>'offset')::bigint AS off, b->'events' AS events
  FROM agent_sessions_each($1::jsonb) AS b
), cur AS (
  SELECT s.tenant_id, s.id, s.running_run_id, i.run_id, i.owner, i.off, i.events
  FROM input i JOIN sessions s ON s.tenant_id = i.tenant_id AND s.id = i.session_id
  ORDER BY s.tenant_id, s.id
  FOR KEY SHARE OF s SKIP LOCKED
), allocated AS (
  SELECT c.tenant_id, c.id, c.run_id, c.events, r.start_seq + c.off AS base
  FROM cur c LEFT JOIN runs r ON r.id = c.run_id AND r.owner = c.owner AND c.running_run_id = c.run_id
), stored AS (
  INSERT INTO run_output (tenant_id, session_id, seq, run_id, type, data)
  SELECT a.tenant_id, a.id, a.base + x.ord, a.run_id, x.e->>'type', COALESCE(x.e->'data', 'null'::jsonb)
  FROM allocated a, jsonb_array_elements(a.events) WITH ORDINALITY AS x(e, ord)
  WHERE a.base IS NOT NULL
  ON CONFLICT (tenant_id, session_id, seq) DO NOTHING
)
SELECT a.tenant_id, a.id, a.base + jsonb_array_length(a.events) AS output_seq, now() AS created_at FROM allocated a
