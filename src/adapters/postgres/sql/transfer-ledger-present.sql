-- transfer-ledger-present: whether the store was ever migrated (export reads the ledger only if it exists).
-- reply: one row (present boolean)
SELECT to_regclass('agent_sessions_migrations') IS NOT NULL AS present
