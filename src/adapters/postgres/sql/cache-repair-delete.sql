-- cache-repair-delete: forgets repairs that were applied.
-- $1 ids bigint[]
-- reply: none
DELETE FROM cache_repairs WHERE id = ANY($1::bigint[])
