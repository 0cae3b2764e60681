-- idempotency-delete-naming: deletes a tenant's stored answers that name any of the given sessions (user erasure).
-- $1 tenant text
-- $2 ids jsonb: the erased session ids (their characters need no JSON escaping)
-- reply: one row: deleted (count)
WITH del AS (
  DELETE FROM idempotency_keys k
  WHERE k.tenant_id = $1
    AND EXISTS (SELECT 1 FROM jsonb_array_elements_text($2::jsonb) AS s(id) WHERE strpos(k.body, '"' || s.id || '"') > 0)
  RETURNING 1
)
SELECT count(*)::int AS deleted FROM del
