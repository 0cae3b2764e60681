-- The session's last output seq, defined once (issue 14). Append-only: never edit a migration
-- that has shipped; add a new numbered file.
--
-- sessions.output_seq is the last seq a run decision wrote (a run's start event, its end). A
-- running run's appends take the seqs after its start event without writing the session row
-- (sql/run-output-append.sql), so while a run runs the last seq is its last archived event's.
-- Unlike the functions of 051 this one is not inlined (its body reads run_output in a
-- subquery); the statements that call it read one session row, and the lookup is one step
-- down the archive's primary key from its end.
CREATE FUNCTION agent_sessions_last_seq(s sessions) RETURNS bigint
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT GREATEST(s.output_seq, (SELECT max(o.seq) FROM run_output o WHERE o.tenant_id = s.tenant_id AND o.session_id = s.id))
$$;
