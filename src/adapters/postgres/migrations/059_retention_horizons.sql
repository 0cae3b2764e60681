-- Replay gaps (issue 12): what the retention sweeps deleted, so a reader whose cursor is older
-- than what is retained gets a `gap` event instead of a silent jump.
--
-- pruned_events: per tenant, the highest event id the outbox retention (OUTBOX_RETENTION_HOURS)
-- deleted. Outbox ids are not contiguous (a rolled-back insert skips one), so the feed cannot
-- infer a gap from the ids it reads; it compares its cursor with this instead.
CREATE TABLE pruned_events (
  tenant_id text PRIMARY KEY,
  through bigint NOT NULL,
  pruned_at timestamptz NOT NULL DEFAULT now()
);

-- runs.output_pruned: the output retention (OUTPUT_RETENTION_HOURS) deleted this run's events
-- from run_output. Output seqs are contiguous per session, so a reader infers the gap from the
-- first seq it reads; the flag only keeps the sweep from visiting the run again.
ALTER TABLE runs ADD COLUMN output_pruned boolean NOT NULL DEFAULT false;
CREATE INDEX runs_output_prunable ON runs (ended_at)
  WHERE ended_at IS NOT NULL AND start_seq IS NOT NULL AND NOT output_pruned;
