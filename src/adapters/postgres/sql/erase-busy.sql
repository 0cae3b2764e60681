-- erase-busy: counts the sessions to erase that have a run queued or running (erasure refuses them before deleting anything).
-- $1 tenant text
-- $2 userId text: only this user's sessions; null: every session of the tenant
-- reply: one row: busy (count)
SELECT count(*) AS busy FROM sessions
WHERE tenant_id = $1 AND ($2::text IS NULL OR user_id = $2::text)
  AND (running_run_id IS NOT NULL OR queued_runs > 0)
