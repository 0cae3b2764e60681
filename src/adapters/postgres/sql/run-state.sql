-- run-state: a session's run bookkeeping and its running and queued runs, read together (one snapshot, no locks) for a decision that run-apply applies only if the locked rows still match.
-- $1 id text
-- $2 tenant text
-- reply: zero or one row: tenant_id, status, effective_status, live, version, output_seq, running_run_id, queued_runs,
--   runs (jsonb array of { id, status, owner, lease_lapsed, input, persist_output, takes_input, interrupt_requested, starts_in_ms,
--   agent, on_owner_lost, max_retries, attempts }: the running run first, then the queue in order; input only for the first two
--   queued (a finalization may start either); starts_in_ms: how long until a debounced queued run's not_before, by the database's
--   clock, 0 when it may start)
-- Live and the status a reader sees are the database's definitions (agent_sessions_live,
-- agent_sessions_effective_status: migration 051). output_seq is the session's last seq
-- (agent_sessions_last_seq, migration 064: a running run's appends do not write the row).
SELECT s.tenant_id, s.status, s.version, agent_sessions_last_seq(s) AS output_seq, s.running_run_id, s.queued_runs, agent_sessions_live(s) AS live,
  agent_sessions_effective_status(s) AS effective_status,
  (SELECT COALESCE(jsonb_agg(jsonb_build_object('id', a.id, 'status', a.status, 'owner', a.owner,
       'lease_lapsed', COALESCE(a.lease_expires_at < now(), false), 'input', CASE WHEN a.rank IN (1, 2) THEN a.input END,
       'persist_output', a.persist_output, 'takes_input', a.takes_input,
       'interrupt_requested', a.interrupt_requested_at IS NOT NULL, 'starts_in_ms', CASE WHEN a.not_before IS NULL THEN 0 ELSE GREATEST(0, ceil(extract(epoch FROM (a.not_before - clock_timestamp())) * 1000))::bigint END,
       'agent', a.agent, 'on_owner_lost', a.on_owner_lost, 'max_retries', a.max_retries, 'attempts', a.attempts)
     ORDER BY a.rank), '[]'::jsonb)
   FROM (
     SELECT r.id, r.status, r.owner, r.lease_expires_at, r.input, r.persist_output, r.takes_input, r.not_before, r.interrupt_requested_at,
       r.agent, r.on_owner_lost, r.max_retries, r.attempts, 0 AS rank
     FROM runs r WHERE r.tenant_id = s.tenant_id AND r.session_id = s.id AND r.status = 'running'
     UNION ALL
     SELECT r.id, r.status, r.owner, r.lease_expires_at, r.input, r.persist_output, r.takes_input, r.not_before, r.interrupt_requested_at,
       r.agent, r.on_owner_lost, r.max_retries, r.attempts, row_number() OVER (ORDER BY r.created_at, r.id)
     FROM runs r WHERE r.tenant_id = s.tenant_id AND r.session_id = s.id AND r.status = 'queued'
   ) a) AS runs
FROM sessions s
WHERE s.tenant_id = $2 AND s.id = $1
