-- migration-ledger-record: records a migration as applied.
-- $1 version integer
-- $2 name text: the file name without .sql
-- reply: none
INSERT INTO agent_sessions_migrations (version, name) VALUES ($1, $2)
