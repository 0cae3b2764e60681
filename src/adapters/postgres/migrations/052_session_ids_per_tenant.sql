-- Session ids are strings chosen by the client (or UUIDv7 by the server), unique per tenant
-- (issue 11): an AI SDK chat id is a nanoid, an OpenAI conversation id is `conv_...`, and two
-- tenants may both use `chat-1` without learning of each other. The key of `sessions` becomes
-- (tenant_id, id), and every table that points at a session carries the tenant with it.
--
-- Existing ids are UUIDs, which are valid ids under the new rule, so every row keeps its id:
-- the columns change type in place (uuid -> text, the same characters) and the child tables
-- get their session's tenant. Each table is rewritten once by its ALTER and once by the
-- UPDATE that fills tenant_id; the closing note of issue 11 has the timing on a populated
-- database. Instances of the previous version cannot work against this schema (their
-- statements compare the columns with uuid parameters): docs/operations.md, "Upgrading to
-- per-tenant session ids", says how to deploy it.

ALTER TABLE session_items DROP CONSTRAINT session_items_session_id_fkey;
ALTER TABLE runs DROP CONSTRAINT runs_session_id_fkey;
ALTER TABLE run_output DROP CONSTRAINT run_output_session_id_fkey;
ALTER TABLE session_locks DROP CONSTRAINT session_locks_session_id_fkey;

-- sessions: the key is (tenant_id, id); the id pattern is checked by the code (a CHECK would
-- cost every insert a regex and refuse nothing the code lets through).
ALTER TABLE sessions DROP CONSTRAINT sessions_pkey;
ALTER TABLE sessions
  ALTER COLUMN id TYPE text,
  ALTER COLUMN parent_session_id TYPE text;
ALTER TABLE sessions ADD CONSTRAINT sessions_pkey PRIMARY KEY (tenant_id, id);

-- session_items
ALTER TABLE session_items DROP CONSTRAINT session_items_pkey;
ALTER TABLE session_items ALTER COLUMN session_id TYPE text, ADD COLUMN tenant_id text;
UPDATE session_items i SET tenant_id = s.tenant_id FROM sessions s WHERE s.id = i.session_id;
-- Items of no session cannot exist (they cascaded), but a NOT NULL must not depend on it.
DELETE FROM session_items WHERE tenant_id IS NULL;
ALTER TABLE session_items
  ALTER COLUMN tenant_id SET NOT NULL,
  ADD CONSTRAINT session_items_pkey PRIMARY KEY (tenant_id, session_id, seq),
  ADD CONSTRAINT session_items_session_fkey FOREIGN KEY (tenant_id, session_id)
    REFERENCES sessions (tenant_id, id) ON DELETE CASCADE;

-- runs (already carry tenant_id)
DROP INDEX runs_one_running;
DROP INDEX runs_session;
DROP INDEX runs_queued;
DROP INDEX runs_started;
ALTER TABLE runs ALTER COLUMN session_id TYPE text;
ALTER TABLE runs ADD CONSTRAINT runs_session_fkey FOREIGN KEY (tenant_id, session_id)
  REFERENCES sessions (tenant_id, id) ON DELETE CASCADE;
CREATE UNIQUE INDEX runs_one_running ON runs (tenant_id, session_id) WHERE status = 'running';
CREATE INDEX runs_session ON runs (tenant_id, session_id, created_at DESC);
CREATE INDEX runs_queued ON runs (tenant_id, session_id, created_at, id) WHERE status = 'queued';
CREATE INDEX runs_started ON runs (tenant_id, session_id, start_seq DESC) WHERE start_seq IS NOT NULL;

-- run_output
ALTER TABLE run_output DROP CONSTRAINT run_output_pkey;
ALTER TABLE run_output ALTER COLUMN session_id TYPE text, ADD COLUMN tenant_id text;
UPDATE run_output o SET tenant_id = s.tenant_id FROM sessions s WHERE s.id = o.session_id;
DELETE FROM run_output WHERE tenant_id IS NULL;
ALTER TABLE run_output
  ALTER COLUMN tenant_id SET NOT NULL,
  ADD CONSTRAINT run_output_pkey PRIMARY KEY (tenant_id, session_id, seq),
  ADD CONSTRAINT run_output_session_fkey FOREIGN KEY (tenant_id, session_id)
    REFERENCES sessions (tenant_id, id) ON DELETE CASCADE;

-- session_locks
ALTER TABLE session_locks DROP CONSTRAINT session_locks_pkey;
ALTER TABLE session_locks ALTER COLUMN session_id TYPE text, ADD COLUMN tenant_id text;
UPDATE session_locks l SET tenant_id = s.tenant_id FROM sessions s WHERE s.id = l.session_id;
DELETE FROM session_locks WHERE tenant_id IS NULL;
ALTER TABLE session_locks
  ALTER COLUMN tenant_id SET NOT NULL,
  ADD CONSTRAINT session_locks_pkey PRIMARY KEY (tenant_id, session_id),
  ADD CONSTRAINT session_locks_session_fkey FOREIGN KEY (tenant_id, session_id)
    REFERENCES sessions (tenant_id, id) ON DELETE CASCADE;

-- outbox rows keep their tenant and id; only the type changes (published events name the
-- session as before).
ALTER TABLE outbox ALTER COLUMN session_id TYPE text;

-- cache_repairs: which cached session to repair; the cache is keyed by tenant and id now.
-- A record whose session is gone has nothing left to repair.
ALTER TABLE cache_repairs ALTER COLUMN session_id TYPE text, ADD COLUMN tenant_id text;
UPDATE cache_repairs r SET tenant_id = s.tenant_id FROM sessions s WHERE s.id = r.session_id;
DELETE FROM cache_repairs WHERE tenant_id IS NULL;
ALTER TABLE cache_repairs ALTER COLUMN tenant_id SET NOT NULL;

-- The item functions of 051 take the session's key now.
DROP FUNCTION agent_sessions_pop_item(uuid);
DROP FUNCTION agent_sessions_clear_items(uuid);

CREATE FUNCTION agent_sessions_pop_item(p_tenant text, p_session text) RETURNS jsonb
LANGUAGE sql VOLATILE AS $$
  WITH popped AS (
    DELETE FROM session_items
    WHERE tenant_id = p_tenant AND session_id = p_session
      AND seq = (SELECT max(seq) FROM session_items WHERE tenant_id = p_tenant AND session_id = p_session)
    RETURNING *
  )
  SELECT to_jsonb(p) FROM popped p
$$;

CREATE FUNCTION agent_sessions_clear_items(p_tenant text, p_session text) RETURNS integer
LANGUAGE sql VOLATILE AS $$
  WITH cleared AS (DELETE FROM session_items WHERE tenant_id = p_tenant AND session_id = p_session RETURNING 1)
  SELECT count(*)::int FROM cleared
$$;

-- Redis names a session by its key now (`<tenant>/<id>`: cache entries, live output streams,
-- lock leases), so the keys written under the old names would never be read again. Everything
-- in them is a copy (the cache of rows, output already archived here) or a lease that only
-- saves work. Forgetting the trusted server makes the first instance that connects clear the
-- prefix's keys before it uses Redis, the path a restarted Redis takes (migration 011).
DELETE FROM cache_redis_servers;
