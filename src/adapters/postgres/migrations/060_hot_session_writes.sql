-- Session writes become HOT updates (issue 14). Append-only: never edit a migration that has
-- shipped; add a new numbered file.
--
-- Every write that counts as activity (touch, counters, items, updates) moves last_active_at
-- and expires_at. Both were index keys (sessions_live_activity, sessions_live_expiry), so no
-- write to a session could be a heap-only-tuple update: each one added an entry to every
-- index of the table and left as many dead ones behind. Neither index served its key order:
-- the sweeps select by agent_sessions_deadline(s), an expression of several columns, and read
-- the two indexes only as the list of live rows (a bitmap scan on the partial predicate; see
-- EXPLAIN of sweep-expire-due and sweep-warn-expiring). One partial index on a column no
-- write changes keeps that list, so the sweeps read exactly the rows they read before and
-- apply the same exact conditions, while a write that does not change the status, the owner
-- or the ended time is HOT (PostgreSQL re-uses the page and touches no index).
DROP INDEX IF EXISTS sessions_live_expiry;
DROP INDEX IF EXISTS sessions_live_activity;
CREATE INDEX sessions_live ON sessions (created_at)
  WHERE status IN ('initializing', 'active', 'idle', 'waiting_input');
