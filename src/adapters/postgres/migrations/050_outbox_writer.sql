-- One outbox writer (issue 9): every statement that emits events calls this function with the
-- session's events, in the order they happened, in the same transaction as its change.
-- Append-only: never edit a migration that has shipped; add a new numbered file.
--
-- p_events is a JSON array of {"type": ..., "payload": {...}}; elements that are not objects
-- (a jsonb_build_array(CASE WHEN ... END) whose condition was false yields null) are skipped,
-- so a statement can list conditional events in place. Returns the number of rows written.
-- It runs the INSERT itself, so the outbox's RowExclusiveLock is still taken before an id is
-- drawn (the event feed's horizon, src/adapters/postgres/outbox.ts, depends on that).
CREATE FUNCTION agent_sessions_emit(p_tenant text, p_session uuid, p_events jsonb) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  written integer;
BEGIN
  INSERT INTO outbox (tenant_id, type, session_id, payload)
  SELECT p_tenant, x.e->>'type', p_session, x.e->'payload'
  FROM jsonb_array_elements(p_events) WITH ORDINALITY AS x(e, ord)
  WHERE jsonb_typeof(x.e) = 'object'
  ORDER BY x.ord;
  GET DIAGNOSTICS written = ROW_COUNT;
  RETURN written;
END
$$;
