-- migration-ledger-versions: the migrations applied so far.
-- reply: one row (version) per migration, in order
SELECT version FROM agent_sessions_migrations ORDER BY version
