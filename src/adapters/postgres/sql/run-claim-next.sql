-- run-claim-next: the next queued run a worker of an agent may claim, its session row and its own row locked; rows another transaction holds are skipped (SKIP LOCKED), so two claimers never take the same run.
-- $1 agent text
-- reply: zero or one row: id, tenant_id, session_id
-- Claimable: queued, unowned (an agent run waiting for a worker), of this agent, past its
-- not_before (on the database's clock), the head of its session's queue (created_at, id), and
-- nothing runs on its session. A session that ended is returned too: the claim ends its queue.
-- The locks are taken with SKIP LOCKED, so this statement never waits (no lock cycle with a
-- writer that locks the session row and then its runs); the claim then decides on the locked
-- rows (run-active-runs, planClaim in src/core/run-rules.ts).
SELECT r.id, r.tenant_id, r.session_id
FROM runs r
JOIN sessions s ON s.tenant_id = r.tenant_id AND s.id = r.session_id
WHERE r.status = 'queued' AND r.owner IS NULL AND r.agent = $1
  AND (r.not_before IS NULL OR r.not_before <= now())
  AND s.running_run_id IS NULL
  AND NOT EXISTS (
    SELECT 1 FROM runs q
    WHERE q.tenant_id = r.tenant_id AND q.session_id = r.session_id AND q.status = 'queued'
      AND (q.created_at, q.id) < (r.created_at, r.id)
  )
ORDER BY r.created_at, r.id
LIMIT 1
FOR UPDATE OF s, r SKIP LOCKED
