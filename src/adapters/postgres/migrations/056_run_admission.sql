-- Turn admission policies (issue 12, SPEC §7.1): a queued run a policy drops ends `cancelled`
-- (it never ran); a run's `inputs` hold every input it takes, in arrival order (one unless
-- merged or debounced; `input` stays the first, for readers of the old shape); a debounced
-- queued run may not start before `not_before`; `takes_input` says whether the runner reads
-- input while it runs (else `steer` queues the input as a follow-up).
ALTER TABLE runs DROP CONSTRAINT runs_status_check;
ALTER TABLE runs ADD CONSTRAINT runs_status_check
  CHECK (status IN ('queued', 'running', 'completed', 'failed', 'interrupted', 'cancelled'));

ALTER TABLE runs
  ADD COLUMN inputs      jsonb       NOT NULL DEFAULT '[]'::jsonb,
  ADD COLUMN not_before  timestamptz,
  ADD COLUMN takes_input boolean     NOT NULL DEFAULT false;

UPDATE runs SET inputs = jsonb_build_array(COALESCE(input, 'null'::jsonb));
