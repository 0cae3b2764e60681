-- cache-repair-pending: how many repairs wait to be applied.
-- reply: one row, n
SELECT count(*)::int AS n FROM cache_repairs
