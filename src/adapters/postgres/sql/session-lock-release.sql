-- session-lock-release: gives a lease back, if this holder still has it.
-- $1 sessionId text
-- $2 token text: the holder's token
-- $3 tenant text
-- reply: no rows
DELETE FROM session_locks WHERE tenant_id = $3 AND session_id = $1 AND token = $2
