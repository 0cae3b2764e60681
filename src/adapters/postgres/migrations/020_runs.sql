-- Runs: admission state on the session row, inputs, and bookkeeping for resumable output.
-- The session row is locked by every statement that starts, queues, finalizes or appends to
-- a run, so keeping the admission state there makes those checks exact under concurrency
-- (a re-checked row, not a statement snapshot).

ALTER TABLE sessions
  ADD COLUMN running_run_id uuid,
  ADD COLUMN queued_runs    integer NOT NULL DEFAULT 0 CHECK (queued_runs >= 0);

ALTER TABLE runs
  -- machine-readable end: completed, interrupted, runner_error, owner_lost, owner_shutdown ...
  ADD COLUMN end_reason text,
  -- seq of the run's first output event (its `status: running`) and of its terminal event
  ADD COLUMN start_seq  bigint,
  ADD COLUMN end_seq    bigint,
  -- last allocated seq of run_inputs
  ADD COLUMN input_seq  bigint NOT NULL DEFAULT 0;

-- Input forwarded to a running run: the durable path behind the fast signal.
CREATE TABLE run_inputs (
  run_id     uuid        NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  seq        bigint      NOT NULL,
  data       jsonb       NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (run_id, seq)
);

CREATE INDEX runs_queued ON runs (session_id, created_at, id) WHERE status = 'queued';
-- the orphan sweep looks for running or queued runs whose owner stopped renewing the lease
CREATE INDEX runs_active_lease ON runs (lease_expires_at) WHERE status IN ('running', 'queued');
CREATE INDEX runs_started ON runs (session_id, start_seq DESC) WHERE start_seq IS NOT NULL;
