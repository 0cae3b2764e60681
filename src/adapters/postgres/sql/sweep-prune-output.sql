-- sweep-prune-output: deletes the archived output of runs that ended longer ago than the retention period, but never of a session's latest started run, and marks those runs pruned.
-- $1 hours integer: the retention period
-- $2 limit integer: most runs per call
-- reply: one row, n: how many runs' output was deleted
-- The latest run's output stays, so a reader that joins later still gets its replay and its
-- terminal event. A reader whose cursor is older reads a first seq above cursor + 1 (seqs are
-- contiguous per session) and gets a `gap` event (output-stream.ts).
WITH due AS (
  SELECT r.id, r.tenant_id, r.session_id, r.start_seq, r.end_seq FROM runs r
  WHERE r.ended_at IS NOT NULL AND r.start_seq IS NOT NULL AND NOT r.output_pruned
    AND r.ended_at < now() - $1::int * interval '1 hour'
    AND EXISTS (
      SELECT 1 FROM runs n
      WHERE n.tenant_id = r.tenant_id AND n.session_id = r.session_id AND n.start_seq > r.start_seq)
  ORDER BY r.ended_at
  LIMIT $2
  FOR UPDATE OF r SKIP LOCKED
), marked AS (
  UPDATE runs r SET output_pruned = true FROM due WHERE r.id = due.id RETURNING r.id
), del AS (
  -- A run's events are the seqs from its start to its terminal event (one run runs at a time).
  DELETE FROM run_output o USING due
  WHERE o.tenant_id = due.tenant_id AND o.session_id = due.session_id AND o.run_id = due.id
    AND o.seq >= due.start_seq AND o.seq <= COALESCE(due.end_seq, 9223372036854775807)
)
SELECT count(*)::int AS n FROM marked
