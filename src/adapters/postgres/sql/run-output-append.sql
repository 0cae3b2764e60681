-- run-output-append: allocates contiguous seqs and archives a batch of a run's output, only while it is the session's running run.
-- $1 session uuid
-- $2 run uuid
-- $3 events jsonb: array of { type, data }
-- reply: the stored events (seq, run_id, type, data, created_at); no row when the run is not running
-- The check is on the locked session row (cur), not the UPDATE's snapshot of it: a finalization
-- that ended this run holds and changes that row, so a batch racing it commits before the
-- terminal event or not at all.
WITH cur AS (
  SELECT s.id, s.running_run_id FROM sessions s WHERE s.id = $1::uuid FOR UPDATE
), allocated AS (
  UPDATE sessions s SET output_seq = s.output_seq + jsonb_array_length($3::jsonb)
  FROM cur WHERE s.id = cur.id AND cur.running_run_id = $2::uuid
  RETURNING s.output_seq
)
INSERT INTO run_output (session_id, seq, run_id, type, data)
SELECT $1::uuid, a.output_seq - jsonb_array_length($3::jsonb) + x.ord, $2::uuid, x.e->>'type', COALESCE(x.e->'data', 'null'::jsonb)
FROM allocated a, jsonb_array_elements($3::jsonb) WITH ORDINALITY AS x(e, ord)
RETURNING seq, run_id, type, data, created_at
