-- run-interrupt-flag: asks the session's running run (or the one named, if it runs) to stop; touches only the run row, so it never waits behind output writes.
-- $1 session text
-- $2 tenant text
-- $3 run uuid, null for whichever runs
-- reply: the flagged run (a request already made keeps its time); no row when none was running as the statement began
UPDATE runs SET interrupt_requested_at = COALESCE(interrupt_requested_at, now())
WHERE tenant_id = $2 AND session_id = $1 AND status = 'running' AND ($3::uuid IS NULL OR id = $3::uuid)
RETURNING *
