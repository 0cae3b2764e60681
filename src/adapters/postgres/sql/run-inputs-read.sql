-- run-inputs-read: input sent to a run after the last seq its owner delivered, in order.
-- $1 run uuid
-- $2 after bigint
-- reply: rows seq, data
SELECT seq, data FROM run_inputs WHERE run_id = $1 AND seq > $2 ORDER BY seq
