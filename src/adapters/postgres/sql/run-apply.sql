-- run-apply: carries out a run decision (src/core/run-rules.ts): run rows, output events, the session's bookkeeping, outbox events; a decision made on a snapshot only if the rows it read are unchanged.
-- $1 session text
-- $2 tenant text: the session's tenant
-- $3 plan jsonb: {
--      expect: [] when this transaction already holds the rows the decision read; or, for a decision
--        made on run-state's snapshot, [{ status, version, output_seq, running_run_id, queued_runs, live,
--        runs: [{ id, status, deferred?, interrupted? }] }]: the session row and the running and queued runs as it
--        read them (when given: whether the run's not_before was still ahead, by the database's clock; whether it
--        was asked to stop, a flag run-interrupt-flag sets without the session's lock),
--      session: [] or [{ output_seq, running_run_id, queued_runs, status }] (status null: not activity),
--      stop: [{ id, ends, status, end_reason, error, end_seq, interrupt }] (runs that end, or are asked to stop),
--      start: [{ id, start_seq, lease_ms, owner, takes_input }] (queued runs that start; owner set: a worker claimed it,
--        takes_input set: whether its runner reads input),
--      handback: [{ id }] (running runs whose owner was lost go back to the queue: owner and lease NULL, attempts + 1),
--      insert: [{ id, status, owner, input, start_seq, lease_ms, persist_output, takes_input, defer_ms, agent, on_owner_lost,
--        max_retries }] (inputs = [input]; defer_ms not null: not_before = now() + defer_ms; owner and lease_ms null: an
--        agent run queued for a worker to claim),
--      append: [{ id, input, defer_ms }] (a queued run takes one more input, at the end of its inputs; defer_ms not
--        null: its not_before becomes now() + defer_ms),
--      steer: [{ id, input }] (input for the running run: its next input seq, a run_inputs row, outbox run.input),
--      output: [{ seq, run_id, type, data }],
--      outbox: [{ type, payload }],
--      persist: [] or [{ run_id }]: the run whose archived `text` events become one assistant message item
--        (appended like session-append-items: next item seq, activity, item.added; nothing when it streamed no text),
--      counters: [] or [{ input_tokens, output_tokens, total_cost_usd }]: a run's usage, added to the session's counters
--        (activity, like session-increment-counters) }
-- reply: one row: applied (false: the rows changed since the snapshot and nothing was written), session (the
--   written row when its status was set or an item appended, else null), runs (the run rows written; a steered run
--   with its new input_seq), events (the
--   output rows written, in seq order), sessions_written, item (the session_items row appended, or null)
WITH expected AS (
  SELECT * FROM jsonb_to_recordset($3::jsonb->'expect')
    AS x(status text, version bigint, output_seq bigint, running_run_id uuid, queued_runs integer, live boolean, runs jsonb)
), cur AS (
  -- A decision made on a snapshot: lock the session row, then the runs it read (lock order:
  -- session, then runs), and compare their newest versions with what the decision saw. The
  -- rules are pure, so unchanged rows mean the same decision. The last seq is run-state's
  -- (agent_sessions_last_seq). An append committed while this statement waited for the
  -- row is not in its snapshot, but the plan's first event takes the seq after the one the
  -- decision saw, which that append took: the insert fails on the archive's key, and the
  -- caller decides again on the locked rows.
  SELECT s.id, s.status, s.version, agent_sessions_last_seq(s) AS output_seq, s.running_run_id, s.queued_runs,
    agent_sessions_live(s) AS live
  FROM sessions s
  WHERE s.tenant_id = $2 AND s.id = $1 AND EXISTS (SELECT 1 FROM expected)
  FOR UPDATE OF s
), held AS (
  SELECT r.id, r.status, COALESCE(r.not_before > clock_timestamp(), false) AS deferred,
    r.interrupt_requested_at IS NOT NULL AS interrupted FROM runs r
  WHERE r.tenant_id = $2 AND r.session_id = $1 AND (SELECT count(*) FROM cur) = 1
    AND r.id IN (SELECT (e->>'id')::uuid FROM expected x, jsonb_array_elements(x.runs) e)
  FOR UPDATE OF r
), guard AS (
  SELECT NOT EXISTS (SELECT 1 FROM expected) OR EXISTS (
    SELECT 1 FROM cur, expected x
    WHERE cur.status = x.status AND cur.version = x.version AND cur.output_seq = x.output_seq
      AND cur.running_run_id IS NOT DISTINCT FROM x.running_run_id AND cur.queued_runs = x.queued_runs
      AND cur.live = x.live
      AND (SELECT count(*) FROM held h JOIN jsonb_to_recordset(x.runs) AS e(id uuid, status text, deferred boolean, interrupted boolean)
             ON e.id = h.id AND e.status = h.status AND (e.deferred IS NULL OR e.deferred = h.deferred)
               AND (e.interrupted IS NULL OR e.interrupted = h.interrupted))
        = jsonb_array_length(x.runs)
  ) AS ok
), stopped AS (
  UPDATE runs r SET
    status = CASE WHEN w.ends THEN w.status ELSE r.status END,
    end_reason = CASE WHEN w.ends THEN w.end_reason ELSE r.end_reason END,
    error = CASE WHEN w.ends THEN w.error ELSE r.error END,
    end_seq = CASE WHEN w.ends THEN w.end_seq ELSE r.end_seq END,
    ended_at = CASE WHEN w.ends THEN now() ELSE r.ended_at END,
    lease_expires_at = CASE WHEN w.ends THEN NULL ELSE r.lease_expires_at END,
    interrupt_requested_at = CASE WHEN w.interrupt THEN COALESCE(r.interrupt_requested_at, now()) ELSE r.interrupt_requested_at END
  FROM jsonb_to_recordset($3::jsonb->'stop')
    AS w(id uuid, ends boolean, status text, end_reason text, error text, end_seq bigint, interrupt boolean)
  WHERE r.id = w.id AND r.tenant_id = $2 AND r.session_id = $1 AND (SELECT ok FROM guard)
  RETURNING r.*
), handed_back AS (
  UPDATE runs r SET status = 'queued', owner = NULL, lease_expires_at = NULL, started_at = NULL,
    interrupt_requested_at = NULL, attempts = r.attempts + 1
  FROM jsonb_to_recordset($3::jsonb->'handback') AS w(id uuid)
  WHERE r.id = w.id AND r.tenant_id = $2 AND r.session_id = $1 AND (SELECT ok FROM guard)
  RETURNING r.*
), started AS (
  -- After `stopped` has run (the subquery makes it finish first), so the run that stops
  -- running has left the one-running-run index before the next one enters it.
  UPDATE runs r SET status = 'running', started_at = now(), start_seq = w.start_seq,
    lease_expires_at = now() + w.lease_ms * interval '1 millisecond', owner = COALESCE(w.owner, r.owner),
    takes_input = COALESCE(w.takes_input, r.takes_input)
  FROM jsonb_to_recordset($3::jsonb->'start') AS w(id uuid, start_seq bigint, lease_ms integer, owner text, takes_input boolean)
  WHERE r.id = w.id AND r.tenant_id = $2 AND r.session_id = $1 AND (SELECT count(*) FROM stopped) >= 0 AND (SELECT ok FROM guard)
  RETURNING r.*
), inserted AS (
  -- created_at orders the queue: the clock as the row is written, under the session's lock, so
  -- queue order is admission order (now() is when the transaction began, maybe before the lock).
  INSERT INTO runs (id, session_id, tenant_id, status, owner, lease_expires_at, input, inputs, started_at, start_seq, persist_output,
    takes_input, not_before, created_at, agent, on_owner_lost, max_retries)
  SELECT w.id, $1::text, $2::text, w.status, w.owner, now() + w.lease_ms * interval '1 millisecond', COALESCE(w.input, 'null'::jsonb),
    jsonb_build_array(COALESCE(w.input, 'null'::jsonb)), CASE WHEN w.status = 'running' THEN now() END, w.start_seq,
    COALESCE(w.persist_output, false), COALESCE(w.takes_input, false), now() + w.defer_ms * interval '1 millisecond', clock_timestamp(),
    w.agent, COALESCE(w.on_owner_lost, 'fail'), COALESCE(w.max_retries, 0)
  FROM jsonb_to_recordset($3::jsonb->'insert')
    AS w(id uuid, status text, owner text, input jsonb, start_seq bigint, lease_ms integer, persist_output boolean, takes_input boolean,
      defer_ms integer, agent text, on_owner_lost text, max_retries integer)
  WHERE (SELECT ok FROM guard)
  RETURNING *
), appended AS (
  -- Merged or debounced input: the session row is locked, so inputs keep the order of admission.
  UPDATE runs r SET inputs = r.inputs || jsonb_build_array(COALESCE(w.input, 'null'::jsonb)),
    not_before = CASE WHEN w.defer_ms IS NULL THEN r.not_before ELSE now() + w.defer_ms * interval '1 millisecond' END
  FROM jsonb_to_recordset($3::jsonb->'append') AS w(id uuid, input jsonb, defer_ms integer)
  WHERE r.id = w.id AND r.tenant_id = $2 AND r.session_id = $1 AND r.status = 'queued' AND (SELECT ok FROM guard)
  RETURNING r.*
), steered AS (
  -- Input for the running run, as run-input-add stores it (its owner reads run_inputs after the signal or at its next beat).
  UPDATE runs r SET input_seq = r.input_seq + 1
  FROM jsonb_to_recordset($3::jsonb->'steer') AS w(id uuid, input jsonb)
  WHERE r.id = w.id AND r.tenant_id = $2 AND r.session_id = $1 AND r.status = 'running' AND (SELECT ok FROM guard)
  RETURNING r.*, COALESCE(w.input, 'null'::jsonb) AS steered_input
), steered_input AS (
  INSERT INTO run_inputs (run_id, seq, data) SELECT s.id, s.input_seq, s.steered_input FROM steered s
), persisted AS (
  -- The text the run streamed, in seq order. Every event of it is archived by now and this
  -- snapshot sees it: its owner flushed its output before finalizing; an append locks the
  -- session row and checks the running run there, so it committed before this transaction
  -- locked the row (the locked way: this statement's snapshot is taken after the lock), or
  -- moved the last seq, which the guard then sees, or took the terminal event's seq, which
  -- fails this statement (the snapshot way), or it stores nothing.
  -- A text event's data is { text } (or the text itself). Exactly once: the plan comes only
  -- with the run's end, which this statement writes.
  SELECT w.run_id,
    string_agg(CASE WHEN jsonb_typeof(o.data) = 'string' THEN o.data #>> '{}' ELSE o.data ->> 'text' END, '' ORDER BY o.seq) AS text
  FROM jsonb_to_recordset($3::jsonb->'persist') AS w(run_id uuid)
  JOIN runs r ON r.id = w.run_id AND r.tenant_id = $2 AND r.session_id = $1
  JOIN run_output o ON o.tenant_id = $2 AND o.session_id = $1 AND o.seq >= r.start_seq AND o.run_id = w.run_id AND o.type = 'text'
  WHERE (SELECT ok FROM guard)
  GROUP BY w.run_id
  HAVING COALESCE(string_agg(CASE WHEN jsonb_typeof(o.data) = 'string' THEN o.data #>> '{}' ELSE o.data ->> 'text' END, ''), '') <> ''
), written_session AS (
  -- Activity (a status set, or an item appended) bumps the version once and slides the expiry
  -- (agent_sessions_slide_expiry); an item takes the next item seq, as an append does.
  -- A run's usage adds to the counters (in SQL, as session-increment-counters does) and is activity too.
  UPDATE sessions s SET output_seq = w.output_seq, running_run_id = w.running_run_id, queued_runs = w.queued_runs,
    status = COALESCE(w.status, s.status),
    item_seq = s.item_seq + p.items,
    input_tokens = s.input_tokens + COALESCE(c.input_tokens, 0),
    output_tokens = s.output_tokens + COALESCE(c.output_tokens, 0),
    total_cost_usd = s.total_cost_usd + COALESCE(c.total_cost_usd, 0),
    version = s.version + CASE WHEN w.status IS NULL AND p.items = 0 AND c.n = 0 THEN 0 ELSE 1 END,
    updated_at = CASE WHEN w.status IS NULL AND p.items = 0 AND c.n = 0 THEN s.updated_at ELSE now() END,
    last_active_at = CASE WHEN w.status IS NULL AND p.items = 0 AND c.n = 0 THEN s.last_active_at ELSE now() END,
    expires_at = CASE WHEN w.status IS NULL AND p.items = 0 AND c.n = 0 THEN s.expires_at ELSE agent_sessions_slide_expiry(s) END
  FROM jsonb_to_recordset($3::jsonb->'session') AS w(output_seq bigint, running_run_id uuid, queued_runs integer, status text),
    (SELECT count(*)::int AS items FROM persisted) p,
    (SELECT count(*)::int AS n, sum(x.input_tokens) AS input_tokens, sum(x.output_tokens) AS output_tokens,
       sum(x.total_cost_usd) AS total_cost_usd
     FROM jsonb_to_recordset(COALESCE($3::jsonb->'counters', '[]'::jsonb))
       AS x(input_tokens numeric, output_tokens numeric, total_cost_usd numeric)) c
  WHERE s.tenant_id = $2 AND s.id = $1 AND (SELECT ok FROM guard)
  RETURNING s.*, w.status IS NOT NULL OR p.items > 0 OR c.n > 0 AS activity
), written_item AS (
  -- The item's id is the run's: the message says where it came from.
  INSERT INTO session_items (tenant_id, session_id, seq, id, role, type, content)
  SELECT s.tenant_id, s.id, s.item_seq, p.run_id, 'assistant', 'message', to_jsonb(p.text)
  FROM written_session s, persisted p
  RETURNING *
), written_output AS (
  INSERT INTO run_output (tenant_id, session_id, seq, run_id, type, data)
  SELECT $2::text, $1::text, w.seq, w.run_id, w.type, w.data
  FROM jsonb_to_recordset($3::jsonb->'output') AS w(seq bigint, run_id uuid, type text, data jsonb)
  WHERE (SELECT ok FROM guard)
  RETURNING seq, run_id, type, data, created_at
), events AS (
  SELECT $2::text AS tenant_id, $1::text AS session_id, x.ord, x.e->>'type' AS type, x.e->'payload' AS payload
  FROM jsonb_array_elements($3::jsonb->'outbox') WITH ORDINALITY AS x(e, ord)
  WHERE (SELECT ok FROM guard)
  UNION ALL
  SELECT $2::text, $1::text, jsonb_array_length($3::jsonb->'outbox') + 1, 'item.added',
    jsonb_build_object('count', 1, 'first_seq', s.item_seq, 'last_seq', s.item_seq, 'version', s.version, 'run_id', p.run_id)
  FROM written_session s, persisted p
  UNION ALL
  SELECT $2::text, $1::text, jsonb_array_length($3::jsonb->'outbox') + 2, 'run.input',
    jsonb_build_object('run_id', s.id, 'seq', s.input_seq, 'input', s.steered_input)
  FROM steered s
), emitted AS (
  INSERT INTO outbox (tenant_id, type, session_id, payload)
  SELECT e.tenant_id, e.type, e.session_id, e.payload FROM events e WHERE e.payload IS NOT NULL ORDER BY e.session_id, e.ord
)
SELECT
  (SELECT ok FROM guard) AS applied,
  (SELECT to_jsonb(s) - 'activity' FROM written_session s WHERE s.activity) AS session,
  (SELECT COALESCE(jsonb_agg(r.j), '[]'::jsonb)
   FROM (SELECT to_jsonb(x) AS j FROM (SELECT * FROM stopped UNION ALL SELECT * FROM handed_back UNION ALL SELECT * FROM started
     UNION ALL SELECT * FROM inserted UNION ALL SELECT * FROM appended) x
     UNION ALL SELECT to_jsonb(s) - 'steered_input' FROM steered s) r) AS runs,
  (SELECT COALESCE(jsonb_agg(to_jsonb(o) ORDER BY o.seq), '[]'::jsonb) FROM written_output o) AS events,
  (SELECT count(*) FROM written_session) AS sessions_written,
  (SELECT to_jsonb(i) FROM written_item i) AS item
