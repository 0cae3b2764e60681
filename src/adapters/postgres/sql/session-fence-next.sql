-- session-fence-next: hands out a session's next fencing token (strictly increasing per session).
-- $1 id uuid
-- $2 tenant text
-- reply: one row (fence), or no row when the session is not found
UPDATE sessions SET fence = fence + 1 WHERE id = $1::uuid AND tenant_id = $2 RETURNING fence
