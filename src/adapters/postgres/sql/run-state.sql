-- run-state: a session's run bookkeeping and its running and queued runs, read together (one snapshot, no locks) for a decision that run-apply applies only if the locked rows still match.
-- $1 id text
-- $2 tenant text
-- reply: zero or one row: tenant_id, status, effective_status, live, version, output_seq, running_run_id, queued_runs,
--   runs (jsonb array of { id, status, owner, lease_lapsed, input, persist_output, agent, on_owner_lost, max_retries,
--   attempts }: the running run first, then the
--   queue in order; input only for the head of the queue)
-- Live and the status a reader sees are the database's definitions (agent_sessions_live,
-- agent_sessions_effective_status: migration 051).
SELECT s.tenant_id, s.status, s.version, s.output_seq, s.running_run_id, s.queued_runs, agent_sessions_live(s) AS live,
  agent_sessions_effective_status(s) AS effective_status,
  (SELECT COALESCE(jsonb_agg(jsonb_build_object('id', a.id, 'status', a.status, 'owner', a.owner,
       'lease_lapsed', COALESCE(a.lease_expires_at < now(), false), 'input', CASE WHEN a.rank = 1 THEN a.input END,
       'persist_output', a.persist_output, 'agent', a.agent, 'on_owner_lost', a.on_owner_lost, 'max_retries', a.max_retries,
       'attempts', a.attempts)
     ORDER BY a.rank), '[]'::jsonb)
   FROM (
     SELECT r.id, r.status, r.owner, r.lease_expires_at, r.input, r.persist_output, r.agent, r.on_owner_lost, r.max_retries, r.attempts,
       0 AS rank
     FROM runs r WHERE r.tenant_id = s.tenant_id AND r.session_id = s.id AND r.status = 'running'
     UNION ALL
     SELECT r.id, r.status, r.owner, r.lease_expires_at, r.input, r.persist_output, r.agent, r.on_owner_lost, r.max_retries, r.attempts,
       row_number() OVER (ORDER BY r.created_at, r.id)
     FROM runs r WHERE r.tenant_id = s.tenant_id AND r.session_id = s.id AND r.status = 'queued'
   ) a) AS runs
FROM sessions s
WHERE s.tenant_id = $2 AND s.id = $1
