-- idempotency-lock: serializes the uses of one (tenant, key) until the transaction ends, so
-- concurrent duplicates execute once: the second waits, then finds the first one's answer.
-- $1 tenant text
-- $2 key text
-- reply: one row, locked (always true)
SELECT true AS locked FROM (SELECT pg_advisory_xact_lock(hashtextextended('idempotency:' || $1::text || ':' || $2::text, 0))) l
