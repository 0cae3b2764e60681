-- migration-ledger-create: creates the ledger of applied migrations when there is none.
-- reply: none
CREATE TABLE IF NOT EXISTS agent_sessions_migrations (
  version    integer PRIMARY KEY,
  name       text        NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now()
)
