-- Items as the agent frameworks hand them (issue 11, SPEC §10): a role is optional (an OpenAI
-- Agents function_call, function_call_result or reasoning item has none), and a client may
-- name an item with its own id, so that re-sending it answers the stored item and sending it
-- with another body replaces it in place (the AI SDK re-sends a message with more parts).
-- Append-only: never edit a migration that has shipped; add a new file.
ALTER TABLE session_items ALTER COLUMN role DROP NOT NULL;
ALTER TABLE session_items ADD COLUMN client_id text;
-- One item per client id in a session. Appends look items up by it under the session's row
-- lock, so this index is their lookup path; as a constraint it only backs that lock up.
CREATE UNIQUE INDEX session_items_client_id ON session_items (tenant_id, session_id, client_id) WHERE client_id IS NOT NULL;

-- The stored items of a session whose client ids the batch names (session_items rows as a
-- jsonb array), read after the calling statement locked the session's row: a VOLATILE
-- function takes a fresh snapshot (see agent_sessions_pop_item in 051), so it sees an append
-- of the same client id that committed while the statement waited for the lock, and the
-- retry answers that item instead of storing it twice.
CREATE FUNCTION agent_sessions_items_by_client_id(p_tenant text, p_session text, p_items jsonb) RETURNS jsonb
LANGUAGE sql VOLATILE AS $$
  SELECT COALESCE(jsonb_agg(to_jsonb(i)), '[]'::jsonb) FROM session_items i
  WHERE i.tenant_id = p_tenant AND i.session_id = p_session
    AND i.client_id IN (SELECT x ->> 'client_id' FROM jsonb_array_elements(p_items) AS x WHERE x ->> 'client_id' IS NOT NULL)
$$;

-- Replaces the role, type and content of items of a session whose row the calling statement
-- has locked, by seq (p_items: [{seq, role, type, content}]); id, seq, client_id and
-- created_at stay. Returns the replaced rows as a jsonb array. VOLATILE for the same reason:
-- the items may have been appended after the statement's snapshot.
CREATE FUNCTION agent_sessions_replace_items(p_tenant text, p_session text, p_items jsonb) RETURNS jsonb
LANGUAGE sql VOLATILE AS $$
  WITH replaced AS (
    -- content is taken with ->, so a JSON null stays a jsonb null (not SQL NULL).
    UPDATE session_items i SET role = x ->> 'role', type = x ->> 'type', content = x -> 'content'
    FROM jsonb_array_elements(p_items) AS x
    WHERE i.tenant_id = p_tenant AND i.session_id = p_session AND i.seq = (x ->> 'seq')::bigint
    RETURNING i.*
  )
  SELECT COALESCE(jsonb_agg(to_jsonb(r)), '[]'::jsonb) FROM replaced r
$$;
