-- Events (issue 5): wake-ups for the relay and the event feed, and the indexes they read by.
-- Append-only: never edit a migration that has shipped; add a new numbered file.

-- One NOTIFY per inserting statement, delivered at commit (never for a rollback). Listeners
-- only use it as a wake-up and re-read the table, so the payload is empty and duplicates
-- within a transaction fold into one.
CREATE FUNCTION agent_sessions_outbox_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_catalog.pg_notify('agent_sessions_outbox', '');
  RETURN NULL;
END
$$;

CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
  FOR EACH STATEMENT EXECUTE FUNCTION agent_sessions_outbox_notify();

-- The event feed reads one tenant's events in id order.
CREATE INDEX outbox_tenant_id ON outbox (tenant_id, id);
-- Pruning of never-published rows on instances without a broker.
CREATE INDEX outbox_unpublished_created ON outbox (created_at) WHERE published_at IS NULL;

-- The feed's gap-free horizon (src/adapters/postgres/outbox.ts) assumes that an id is drawn
-- from outbox_id_seq at the moment its row is inserted, i.e. the sequence caches no values
-- per backend. That is the default for bigserial; this states it so nobody "tunes" it.
ALTER SEQUENCE outbox_id_seq CACHE 1;
