-- transfer-orphan-output: after an import, an output row whose session the import did not bring, if any (run_output has no foreign key since migration 063, so the import checks what the key did).
-- reply: at most one row (tenant_id, session_id, seq)
SELECT o.tenant_id, o.session_id, o.seq::text AS seq
FROM run_output o
WHERE NOT EXISTS (SELECT 1 FROM sessions s WHERE s.tenant_id = o.tenant_id AND s.id = o.session_id)
LIMIT 1
