-- Runs by agent name, claimed by any instance that serves the agent (issue 12, SPEC §7.1).
-- agent: the agent that executes the run; NULL for a closure run (runs.start(id, runner)),
--   which is pinned to the instance that started it.
-- on_owner_lost / max_retries / attempts: what the orphan sweep (or a draining owner) does
--   with a run whose owner is lost: 'fail' ends it owner_lost; 'retry' hands it back to the
--   queue (owner and lease NULL) until attempts reaches max_retries. attempts counts restarts.
-- A queued agent run has owner NULL and lease NULL until a worker claims it; the orphan sweep
-- only looks at leased runs, so it never takes such a run for an orphan.
-- not_before: a queued run may not start before it (debounce, migration 056 adds it too; the
--   claim respects it). IF NOT EXISTS: whichever of the two migrations runs first adds it.
ALTER TABLE runs ADD COLUMN agent text;
ALTER TABLE runs ADD COLUMN on_owner_lost text NOT NULL DEFAULT 'fail' CHECK (on_owner_lost IN ('fail', 'retry'));
ALTER TABLE runs ADD COLUMN max_retries integer NOT NULL DEFAULT 0 CHECK (max_retries >= 0);
ALTER TABLE runs ADD COLUMN attempts integer NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS not_before timestamptz;
-- The workers' claim: the oldest queued runs of an agent.
CREATE INDEX runs_claim ON runs (agent, created_at) WHERE status = 'queued';
