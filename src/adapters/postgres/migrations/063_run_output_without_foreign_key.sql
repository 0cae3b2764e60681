-- The output archive's rows without a foreign key (issue 14). Append-only: never edit a
-- migration that has shipped; add a new numbered file.
--
-- Every archived event is a run_output row, and the foreign key to sessions checked each one
-- with a query of its own (the referential-integrity trigger): a tenth to a fifth of the
-- archive statement's time (pgbench, docs/distributed.md). The check proves nothing the statement
-- does not already know: run-output-append(-group) inserts only for sessions it has locked
-- FOR UPDATE in the same statement, and the data import refuses output whose session its file
-- does not hold (src/adapters/postgres/data-transfer.ts).
--
-- What the key also did, ON DELETE CASCADE, a statement-level trigger does now, for every way
-- a session row goes (delete, batch purge, retention sweep, erasure, an operator's DELETE):
-- one DELETE of the output of all the rows the statement removed (a TRUNCATE of sessions has a
-- trigger of its own, below). It runs after those rows are locked and gone, on a snapshot of
-- its own (READ COMMITTED), so output that a concurrent append committed while holding the
-- session's lock is visible to it and removed; an append that comes after waits for the lock
-- and then finds no session, so it inserts nothing.
CREATE FUNCTION agent_sessions_drop_output() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM run_output o USING gone g WHERE o.tenant_id = g.tenant_id AND o.session_id = g.id;
  RETURN NULL;
END
$$;

CREATE TRIGGER sessions_drop_output AFTER DELETE ON sessions
  REFERENCING OLD TABLE AS gone
  FOR EACH STATEMENT EXECUTE FUNCTION agent_sessions_drop_output();

-- TRUNCATE fires no DELETE trigger; `TRUNCATE sessions ... CASCADE` emptied run_output
-- through the key, and still does through this one.
CREATE FUNCTION agent_sessions_truncate_output() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  TRUNCATE run_output;
  RETURN NULL;
END
$$;

CREATE TRIGGER sessions_truncate_output AFTER TRUNCATE ON sessions
  FOR EACH STATEMENT EXECUTE FUNCTION agent_sessions_truncate_output();

ALTER TABLE run_output DROP CONSTRAINT run_output_session_fkey;
