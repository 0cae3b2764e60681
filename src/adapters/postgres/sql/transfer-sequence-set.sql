-- transfer-sequence-set: moves an imported table's sequence past every value in use, so new rows do not collide.
-- $1 sequenceName text: the sequence (regclass text)
-- $2 value bigint: its last value, or null when it was never used (the next value is then 1)
-- reply: one row (value: what nextval returns next, minus one)
SELECT setval($1::regclass, coalesce($2::bigint, 1), $2::bigint IS NOT NULL)::text AS value
