-- The session rules every statement shares (issue 9), defined once here instead of pasted
-- into each statement. Append-only: never edit a migration that has shipped; add a new file.
--
-- Each is a LANGUAGE sql function whose body is one SELECT of one expression, with no
-- SET clause, not STRICT and not less volatile than its body (timestamptz arithmetic and
-- jsonb_populate_record are STABLE): the planner inlines such a
-- function into the calling statement (EXPLAIN VERBOSE shows the expression, not the call),
-- so a call costs what the expression costs, and a condition built from one still matches
-- the partial indexes on live statuses. A `sessions` argument is the row itself (`s`, or
-- `cur::sessions` for a CTE selecting `*`); the planner turns its field reads into columns.

-- A status in which a session still takes writes (the partial indexes of 001 list the same).
CREATE FUNCTION agent_sessions_live_status(p_status text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT p_status IN ('initializing', 'active', 'idle', 'waiting_input')
$$;

-- When a live session stops being live: the earlier of its expiry and its idle deadline (null:
-- never). A session with a run going (active) is not idle, however long its agent is quiet.
CREATE FUNCTION agent_sessions_deadline(s sessions) RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT LEAST(s.expires_at,
    CASE WHEN s.status = 'active' THEN NULL ELSE s.last_active_at + s.idle_timeout_seconds * interval '1 second' END)
$$;

-- Why the deadline is what it is: 'lifetime', 'ttl' or 'idle_timeout' (the expiry's end_reason).
CREATE FUNCTION agent_sessions_deadline_reason(s sessions) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT CASE
    WHEN s.lifetime_ends_at IS NOT NULL AND s.lifetime_ends_at <= agent_sessions_deadline(s) THEN 'lifetime'
    WHEN s.expires_at IS NOT NULL AND s.expires_at <= agent_sessions_deadline(s) THEN 'ttl'
    ELSE 'idle_timeout' END
$$;

-- Whether the session can still take writes: a live status, and its deadline not passed.
CREATE FUNCTION agent_sessions_live(s sessions) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT agent_sessions_live_status(s.status) AND (agent_sessions_deadline(s) > now()) IS NOT FALSE
$$;

-- The preconditions of a write a caller may set, on the locked row: the version it read
-- (If-Match / expectedVersion; null: any) and its fencing token (null: none; an older token
-- than the newest handed out is stale).
CREATE FUNCTION agent_sessions_preconditions_hold(s sessions, p_expected_version bigint, p_fencing_token bigint) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT (p_expected_version IS NULL OR s.version = p_expected_version)
    AND (p_fencing_token IS NULL OR p_fencing_token >= s.fence)
$$;

-- The status a reader sees: a live status past its deadline reads as expired.
CREATE FUNCTION agent_sessions_effective_status(s sessions) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN agent_sessions_live_status(s.status) AND NOT agent_sessions_live(s) THEN 'expired' ELSE s.status END
$$;

-- A timeout warning is current when it was sent after the last activity (activity re-arms it).
CREATE FUNCTION agent_sessions_timeout_warned(s sessions) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT s.timeout_warned_at IS NOT NULL AND s.timeout_warned_at >= s.last_active_at
$$;

-- Sliding expiry: activity now moves expires_at forward by the session's TTL, never past its
-- lifetime. For the SET of a write that counts as activity.
CREATE FUNCTION agent_sessions_slide_expiry(s sessions) RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN s.ttl_seconds IS NULL THEN s.expires_at
    ELSE LEAST(now() + s.ttl_seconds * interval '1 second', s.lifetime_ends_at) END
$$;

-- A list of keys, for turning a JSON array into text[] inside an expression (below).
CREATE TYPE agent_sessions_keys AS (keys text[]);

-- Shallow metadata merge: the patch's keys replace the stored ones and a key set to null is
-- removed; nulls nested inside values are kept as given. A null patch leaves it unchanged.
-- The keys to remove are found by a strict jsonpath (lax mode would unwrap [null] and match
-- it) and made text[] by jsonb_populate_record, not by ARRAY(SELECT ...): a subquery would
-- stop the planner from inlining the function.
CREATE FUNCTION agent_sessions_merge_metadata(p_stored jsonb, p_patch jsonb) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN p_patch IS NULL THEN p_stored
    ELSE (p_stored || p_patch) - (jsonb_populate_record(NULL::agent_sessions_keys, jsonb_build_object('keys',
      jsonb_path_query_array(p_patch, 'strict $.keyvalue() ? (@.value == null).key')))).keys END
$$;

-- A session as events carry it: every column but the bookkeeping ones.
CREATE FUNCTION agent_sessions_session_json(s sessions) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT to_jsonb(s) - '{fence,item_seq,output_seq,lifetime_ends_at,timeout_warned_at,running_run_id,queued_runs}'::text[]
$$;

-- Removing items of a session whose row the calling statement has just locked. A statement
-- reads on the snapshot it started with, which can be older than the lock: an append that
-- committed while the statement waited for the row would be invisible to it, so a pop would
-- take the wrong item and a clear would leave the new ones. A VOLATILE function takes a fresh
-- snapshot for each of its queries, which sees every append that committed before the lock
-- (and no other can be in flight: appends lock the row too). Called once per written session.

-- Deletes the session's last item; returns it (a session_items row as jsonb), or null when none.
CREATE FUNCTION agent_sessions_pop_item(p_session uuid) RETURNS jsonb
LANGUAGE sql VOLATILE AS $$
  WITH popped AS (
    DELETE FROM session_items
    WHERE session_id = p_session AND seq = (SELECT max(seq) FROM session_items WHERE session_id = p_session)
    RETURNING *
  )
  SELECT to_jsonb(p) FROM popped p
$$;

-- Deletes every item of the session; returns how many.
CREATE FUNCTION agent_sessions_clear_items(p_session uuid) RETURNS integer
LANGUAGE sql VOLATILE AS $$
  WITH cleared AS (DELETE FROM session_items WHERE session_id = p_session RETURNING 1)
  SELECT count(*)::int FROM cleared
$$;
