-- session-lock-release: gives a lease back, if this holder still has it.
-- $1 sessionId uuid
-- $2 token text: the holder's token
-- reply: no rows
DELETE FROM session_locks WHERE session_id = $1::uuid AND token = $2
