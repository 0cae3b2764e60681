-- api-key-count: how many keys are stored (the first embedded start makes one when there are none).
-- reply: one row, n
SELECT count(*)::int AS n FROM api_keys
