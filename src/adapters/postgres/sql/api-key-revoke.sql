-- api-key-revoke: revokes a key (of one tenant, when given); revoking twice keeps the first time.
-- $1 id uuid
-- $2 tenant text, null for any tenant
-- reply: the key's row (revoked), or no row when there is no such key
WITH target AS (
  -- Locked, so its revoked_at is the newest: a concurrent revoke that got there first wins.
  SELECT * FROM api_keys WHERE id = $1 AND ($2::text IS NULL OR tenant_id = $2) FOR UPDATE
), revoked AS (
  -- Written only when it changes.
  UPDATE api_keys k SET revoked_at = now() FROM target
  WHERE k.id = target.id AND target.revoked_at IS NULL RETURNING k.*
)
SELECT * FROM revoked UNION ALL SELECT * FROM target WHERE revoked_at IS NOT NULL
