-- session-fence-next: hands out a session's next fencing token (strictly increasing per session).
-- $1 id text
-- $2 tenant text
-- reply: one row (fence; version, the session's version as committed when the fence was bumped),
--   or no row when the session is not found
UPDATE sessions SET fence = fence + 1 WHERE tenant_id = $2 AND id = $1 RETURNING fence, version
