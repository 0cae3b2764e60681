/**
 * Runs and their output on PostgreSQL (pg or PGlite).
 *
 * Admission state lives on the session row (`running_run_id`, `queued_runs`) and every
 * statement that starts, queues, finalizes or appends output locks that row, so its checks
 * are made against the newest row version, never a stale snapshot. Lock order is always
 * session row, then run rows; the heartbeat takes run locks with SKIP LOCKED, so it never
 * waits in a cycle.
 */
import { ConflictError, NotFoundError, RunError } from '../../core/errors.js';
import { decodeCursor, encodeCursor } from '../../core/cursor.js';
import { checkRunsQueued } from '../../core/limits.js';
import type {
  FinalizeRequest,
  FinalizeResult,
  HeartbeatRow,
  NewOutputEvent,
  OutputEvent,
  Run,
  RunInput,
  RunRepository,
  RunStatus,
  StartRunRequest,
  StartRunResult,
} from '../../core/runs.js';
import { effectiveStatus, ENDED_STATUSES, statusesLeadingTo, type Page } from '../../core/types.js';
import type { SqlDatabase, SqlExecutor } from './database.js';
import { rowToSession } from './rows.js';
import { liveSql, SLIDE_EXPIRY_SQL, uuidListSql } from './session-sql.js';
import { iso, isoOrNull, numOrNull, strOrNull, type Row } from './rows.js';

export function rowToRun(r: Row): Run {
  return {
    id: String(r.id),
    sessionId: String(r.session_id),
    tenantId: String(r.tenant_id),
    status: r.status as RunStatus,
    owner: strOrNull(r.owner),
    input: r.input ?? null,
    error: strOrNull(r.error),
    endReason: strOrNull(r.end_reason),
    interruptRequestedAt: isoOrNull(r.interrupt_requested_at),
    leaseExpiresAt: isoOrNull(r.lease_expires_at),
    createdAt: iso(r.created_at),
    startedAt: isoOrNull(r.started_at),
    endedAt: isoOrNull(r.ended_at),
    startSeq: numOrNull(r.start_seq),
    endSeq: numOrNull(r.end_seq),
  };
}

function rowToEvent(r: Row): OutputEvent {
  return { seq: Number(r.seq), runId: String(r.run_id), type: String(r.type), data: r.data ?? null, createdAt: iso(r.created_at) };
}

const ACTIVE_LEADING = JSON.stringify(statusesLeadingTo('active'));
const LEASE = (param: string) => `now() + ${param}::int * interval '1 millisecond'`;
const RUN_EVENT_TYPES: Record<string, string> = {
  completed: 'run.completed',
  failed: 'run.failed',
  interrupted: 'run.interrupted',
};

interface OutboxEvent {
  type: string;
  payload: Record<string, unknown>;
}

function runPayload(run: Run): Record<string, unknown> {
  return { run_id: run.id, status: run.status, reason: run.endReason, error: run.error };
}

export class PostgresRunRepository implements RunRepository {
  constructor(private readonly db: SqlDatabase) {}

  private async outbox(tx: SqlExecutor, tenant: string, sessionId: string, events: OutboxEvent[]): Promise<void> {
    if (events.length === 0) return;
    await tx.query(
      `INSERT INTO outbox (tenant_id, type, session_id, payload)
       SELECT $1, e->>'type', $2::uuid, e->'payload' FROM jsonb_array_elements($3::jsonb) WITH ORDINALITY AS x(e, ord) ORDER BY x.ord`,
      [tenant, sessionId, JSON.stringify(events)],
    );
  }

  async start(req: StartRunRequest): Promise<StartRunResult> {
    for (let attempt = 0; ; attempt++) {
      const started = await this.startNow(req);
      if (started.outcome === 'started') return started.result;
      const cur = started.session;
      if (req.ifBusy === 'reject') {
        throw new RunError('run_in_progress', `session ${req.sessionId} already has a run`, {
          runId: cur.running_run_id === null ? undefined : String(cur.running_run_id),
        });
      }
      const queued = await this.enqueue(req);
      if (queued) return queued;
      // The session fell idle between the two statements: start it now.
      if (attempt >= 3) throw new RunError('run_in_progress', `session ${req.sessionId} is changing; retry`);
    }
  }

  /** The common case in one statement: run row, session → active, first output event, outbox. */
  private async startNow(req: StartRunRequest): Promise<{ outcome: 'started'; result: StartRunResult } | { outcome: 'busy'; session: Row }> {
    const rows = await this.db.query<Row>(
      `WITH cur AS (
         SELECT s.* FROM sessions s WHERE s.id = $1::uuid AND s.tenant_id = $2 FOR UPDATE
       ), upd AS (
         UPDATE sessions s SET status = 'active', version = s.version + 1, updated_at = now(), last_active_at = now(),
           expires_at = ${SLIDE_EXPIRY_SQL}, output_seq = s.output_seq + 1, running_run_id = $3::uuid
         FROM cur
         WHERE s.id = cur.id AND ${liveSql('cur')} AND s.running_run_id IS NULL AND s.queued_runs = 0
           AND cur.status IN (SELECT jsonb_array_elements_text($7::jsonb))
         RETURNING s.*, cur.status AS prev_status
       ), ins AS (
         INSERT INTO runs (id, session_id, tenant_id, status, owner, lease_expires_at, input, started_at, start_seq)
         SELECT $3::uuid, u.id, u.tenant_id, 'running', $4, ${LEASE('$5')}, $6::jsonb, now(), u.output_seq FROM upd u
         RETURNING *
       ), out AS (
         INSERT INTO run_output (session_id, seq, run_id, type, data)
         SELECT u.id, u.output_seq, $3::uuid, 'status', jsonb_build_object('state', 'running', 'run_id', $3::text) FROM upd u
         RETURNING *
       ), ev AS (
         INSERT INTO outbox (tenant_id, type, session_id, payload)
         SELECT u.tenant_id, e.type, u.id, e.payload FROM upd u CROSS JOIN LATERAL (VALUES
           (0, 'session.status_changed', jsonb_build_object('from', u.prev_status, 'to', u.status, 'version', u.version),
             u.prev_status <> u.status),
           (1, 'run.started', jsonb_build_object('run_id', $3::text, 'input', $6::jsonb, 'owner', $4::text), true)
         ) AS e(ord, type, payload, wanted)
         WHERE e.wanted ORDER BY e.ord
       )
       SELECT 'started' AS outcome, to_jsonb(u) AS session, (SELECT to_jsonb(i) FROM ins i) AS run,
         (SELECT to_jsonb(o) FROM out o) AS event, true AS live
       FROM upd u
       UNION ALL
       SELECT 'blocked', to_jsonb(cur), NULL, NULL, ${liveSql('cur')} FROM cur WHERE NOT EXISTS (SELECT 1 FROM upd)`,
      [req.sessionId, req.tenant, req.runId, req.owner, req.leaseMs, JSON.stringify(req.input ?? null), ACTIVE_LEADING],
    );
    const row = rows[0];
    if (!row) throw new NotFoundError('session', req.sessionId);
    const sessionRow = row.session as Row;
    if (row.outcome === 'started') {
      return {
        outcome: 'started',
        result: {
          run: rowToRun(row.run as Row),
          session: rowToSession(sessionRow),
          events: [rowToEvent(row.event as Row)],
          interrupted: [],
          cancelled: [],
          promoted: null,
        },
      };
    }
    this.explainBlocked(req.sessionId, sessionRow, row.live === true);
    return { outcome: 'busy', session: sessionRow };
  }

  /** Throws unless the only reason a start was refused is that a run is going. */
  private explainBlocked(id: string, cur: Row, live: boolean): void {
    const session = rowToSession(cur);
    const status = effectiveStatus(session);
    if (!live || ENDED_STATUSES.includes(status)) {
      throw new ConflictError('session_ended', `session ${id} is ${status}`, { status });
    }
    const busy = cur.running_run_id !== null || Number(cur.queued_runs) > 0;
    if (!busy) {
      throw new ConflictError('invalid_transition', `session ${id} cannot start a run from ${status}`, { status });
    }
  }

  /** Queues the run behind the running one (after stopping it, for ifBusy 'interrupt'); null if the session is idle now. */
  private async enqueue(req: StartRunRequest): Promise<StartRunResult | null> {
    return this.db.transaction(async (tx) => {
      const [cur] = await tx.query<Row>(
        `SELECT s.*, ${liveSql('s')} AS live FROM sessions s WHERE s.id = $1::uuid AND s.tenant_id = $2 FOR UPDATE`,
        [req.sessionId, req.tenant],
      );
      if (!cur) throw new NotFoundError('session', req.sessionId);
      this.explainBlocked(req.sessionId, cur, cur.live === true);
      if (cur.running_run_id === null && Number(cur.queued_runs) === 0) return null;
      let queued = Number(cur.queued_runs);
      let interrupted: Run[] = [];
      let cancelled: Run[] = [];
      if (req.ifBusy === 'interrupt') {
        interrupted = (
          await tx.query<Row>(
            `UPDATE runs SET interrupt_requested_at = COALESCE(interrupt_requested_at, now())
             WHERE id = $1::uuid AND status = 'running' RETURNING *`,
            [cur.running_run_id],
          )
        ).map(rowToRun);
        cancelled = (
          await tx.query<Row>(
            `UPDATE runs SET status = 'interrupted', end_reason = 'interrupted', ended_at = now(), lease_expires_at = NULL,
               interrupt_requested_at = COALESCE(interrupt_requested_at, now())
             WHERE session_id = $1::uuid AND status = 'queued' RETURNING *`,
            [req.sessionId],
          )
        ).map(rowToRun);
        queued -= cancelled.length;
        await this.outbox(tx, req.tenant, req.sessionId, cancelled.map((r) => ({ type: 'run.interrupted', payload: runPayload(r) })));
      } else {
        checkRunsQueued({ runsQueuedPerSession: req.maxQueued }, queued);
      }
      const [inserted] = await tx.query<Row>(
        `INSERT INTO runs (id, session_id, tenant_id, status, owner, lease_expires_at, input)
         VALUES ($1::uuid, $2::uuid, $3, 'queued', $4, ${LEASE('$5')}, $6::jsonb) RETURNING *`,
        [req.runId, req.sessionId, req.tenant, req.owner, req.leaseMs, JSON.stringify(req.input ?? null)],
      );
      await tx.query(`UPDATE sessions SET queued_runs = $2 WHERE id = $1::uuid`, [req.sessionId, queued + 1]);
      return { run: rowToRun(inserted as Row), session: null, events: [], interrupted, cancelled, promoted: null };
    });
  }

  async get(tenant: string, sessionId: string, runId: string): Promise<Run | null> {
    const rows = await this.db.query<Row>(
      'SELECT * FROM runs WHERE id = $1::uuid AND session_id = $2::uuid AND tenant_id = $3',
      [runId, sessionId, tenant],
    );
    return rows[0] ? rowToRun(rows[0]) : null;
  }

  async list(tenant: string, sessionId: string, query: { cursor?: string; limit: number }): Promise<Page<Run> | null> {
    let before: string | null = null;
    if (query.cursor !== undefined) {
      before = decodeCursor(query.cursor, (v): v is { r: string } =>
        typeof v === 'object' && v !== null && typeof (v as { r?: unknown }).r === 'string' &&
        /^[0-9a-f-]{36}$/i.test((v as { r: string }).r),
      ).r;
    }
    // Run ids are UUIDv7, so id order is creation order.
    const rows = await this.db.query<Row>(
      `SELECT r.*, s.id AS sid FROM sessions s
       LEFT JOIN LATERAL (
         SELECT * FROM runs x WHERE x.session_id = s.id AND ($3::uuid IS NULL OR x.id < $3::uuid)
         ORDER BY x.id DESC LIMIT $4
       ) r ON true
       WHERE s.id = $1::uuid AND s.tenant_id = $2
       ORDER BY r.id DESC`,
      [sessionId, tenant, before, query.limit + 1],
    );
    if (rows.length === 0) return null;
    const found = rows.filter((r) => r.id !== null);
    const page = found.slice(0, query.limit);
    const last = page.at(-1);
    return {
      items: page.map(rowToRun),
      nextCursor: found.length > query.limit && last ? encodeCursor({ r: String(last.id) }) : null,
    };
  }

  async streamStart(tenant: string, sessionId: string): Promise<{ run: Run | null; outputSeq: number } | null> {
    const rows = await this.db.query<Row>(
      `SELECT s.output_seq, to_jsonb(r) AS run FROM sessions s
       LEFT JOIN LATERAL (
         SELECT * FROM runs x WHERE x.session_id = s.id AND x.start_seq IS NOT NULL ORDER BY x.start_seq DESC LIMIT 1
       ) r ON true
       WHERE s.id = $1::uuid AND s.tenant_id = $2`,
      [sessionId, tenant],
    );
    const row = rows[0];
    if (!row) return null;
    return { outputSeq: Number(row.output_seq), run: row.run ? rowToRun(row.run as Row) : null };
  }

  async requestInterrupt(tenant: string, sessionId: string, runId: string | undefined): Promise<Run[] | null> {
    // The common case touches only the run row, so it never queues behind output appends.
    const flagged = await this.db.query<Row>(
      `UPDATE runs SET interrupt_requested_at = COALESCE(interrupt_requested_at, now())
       WHERE session_id = $1::uuid AND tenant_id = $2 AND status = 'running' AND ($3::uuid IS NULL OR id = $3::uuid)
       RETURNING *`,
      [sessionId, tenant, runId ?? null],
    );
    if (flagged.length > 0) return flagged.map(rowToRun);
    if (runId !== undefined) {
      const cancelled = await this.db.transaction(async (tx) => {
          const [cur] = await tx.query<Row>(
            'SELECT id FROM sessions WHERE id = $1::uuid AND tenant_id = $2 FOR UPDATE',
            [sessionId, tenant],
          );
          if (!cur) return null;
          const rows = (
            await tx.query<Row>(
              `UPDATE runs SET status = 'interrupted', end_reason = 'interrupted', ended_at = now(), lease_expires_at = NULL,
                 interrupt_requested_at = COALESCE(interrupt_requested_at, now())
               WHERE id = $1::uuid AND session_id = $2::uuid AND status = 'queued' RETURNING *`,
              [runId, sessionId],
            )
          ).map(rowToRun);
          if (rows.length > 0) {
            await tx.query('UPDATE sessions SET queued_runs = queued_runs - $2 WHERE id = $1::uuid', [sessionId, rows.length]);
            await this.outbox(tx, tenant, sessionId, rows.map((r) => ({ type: 'run.interrupted', payload: runPayload(r) })));
          }
          return rows;
        });
      return cancelled;
    }
    const exists = await this.db.query<Row>('SELECT 1 FROM sessions WHERE id = $1::uuid AND tenant_id = $2', [sessionId, tenant]);
    return exists.length > 0 ? [] : null;
  }

  async addInput(
    tenant: string,
    sessionId: string,
    runId: string | undefined,
    data: unknown,
  ): Promise<{ run: Run | null; seq: number } | null> {
    const rows = await this.db.query<Row>(
      `WITH r AS (
         UPDATE runs SET input_seq = input_seq + 1
         WHERE session_id = $1::uuid AND tenant_id = $2 AND status = 'running' AND ($3::uuid IS NULL OR id = $3::uuid)
         RETURNING *
       ), ins AS (
         INSERT INTO run_inputs (run_id, seq, data) SELECT r.id, r.input_seq, $4::jsonb FROM r
       ), ev AS (
         INSERT INTO outbox (tenant_id, type, session_id, payload)
         SELECT r.tenant_id, 'run.input', r.session_id, jsonb_build_object('run_id', r.id, 'seq', r.input_seq, 'input', $4::jsonb)
         FROM r
       )
       SELECT to_jsonb(r) AS run, true AS session_exists FROM r
       UNION ALL
       SELECT NULL, EXISTS (SELECT 1 FROM sessions WHERE id = $1::uuid AND tenant_id = $2) WHERE NOT EXISTS (SELECT 1 FROM r)`,
      [sessionId, tenant, runId ?? null, JSON.stringify(data ?? null)],
    );
    const row = rows[0];
    if (!row || row.session_exists !== true) return null;
    if (!row.run) return { run: null, seq: 0 };
    const run = row.run as Row;
    return { run: rowToRun(run), seq: Number(run.input_seq) };
  }

  async readInputs(runId: string, afterSeq: number): Promise<RunInput[]> {
    const rows = await this.db.query<Row>(
      'SELECT seq, data FROM run_inputs WHERE run_id = $1::uuid AND seq > $2 ORDER BY seq',
      [runId, afterSeq],
    );
    return rows.map((r) => ({ seq: Number(r.seq), data: r.data }));
  }

  async heartbeat(owner: string, runIds: readonly string[], leaseMs: number): Promise<HeartbeatRow[]> {
    if (runIds.length === 0) return [];
    // SKIP LOCKED: a run row held by a finalize or an input write is renewed at the next beat
    // instead of making the heartbeat wait in a lock cycle.
    const rows = await this.db.query<Row>(
      `WITH renew AS (
         UPDATE runs r SET lease_expires_at = ${LEASE('$3')}
         WHERE r.id IN (
           SELECT x.id FROM runs x
           WHERE x.id IN ${uuidListSql('$2')} AND x.owner = $1 AND x.status IN ('running', 'queued')
           FOR UPDATE SKIP LOCKED
         )
         RETURNING r.id
       )
       SELECT r.id, r.status, r.owner, r.interrupt_requested_at IS NOT NULL AS interrupt_requested,
         (extract(epoch FROM r.interrupt_requested_at) * 1000)::float8 AS interrupt_requested_ms, r.input_seq,
         s.status IN ('terminated', 'failed', 'expired') AS session_ended, (SELECT count(*) FROM renew) AS renewed
       FROM runs r JOIN sessions s ON s.id = r.session_id
       WHERE r.id IN ${uuidListSql('$2')}`,
      [owner, JSON.stringify(runIds), leaseMs],
    );
    return rows.map((r) => ({
      id: String(r.id),
      status: r.status as RunStatus,
      owner: strOrNull(r.owner),
      interruptRequested: r.interrupt_requested === true,
      interruptRequestedAt: r.interrupt_requested_ms === null || r.interrupt_requested_ms === undefined ? null : Number(r.interrupt_requested_ms),
      inputSeq: Number(r.input_seq),
      sessionEnded: r.session_ended === true,
    }));
  }

  async appendOutput(sessionId: string, runId: string, events: readonly NewOutputEvent[]): Promise<OutputEvent[] | null> {
    if (events.length === 0) return [];
    // The guard is on the session row: a finalize that ended this run holds (and changed) that
    // row, so an append racing it either commits before the terminal event or not at all.
    const rows = await this.db.query<Row>(
      `WITH upd AS (
         UPDATE sessions s SET output_seq = s.output_seq + $3
         WHERE s.id = $1::uuid AND s.running_run_id = $2::uuid
         RETURNING s.output_seq
       )
       INSERT INTO run_output (session_id, seq, run_id, type, data)
       SELECT $1::uuid, u.output_seq - $3 + x.ord, $2::uuid, x.e->>'type', COALESCE(x.e->'data', 'null'::jsonb)
       FROM upd u, jsonb_array_elements($4::jsonb) WITH ORDINALITY AS x(e, ord)
       RETURNING seq, run_id, type, data, created_at`,
      [sessionId, runId, events.length, JSON.stringify(events.map((e) => ({ type: e.type, data: e.data ?? null })))],
    );
    if (rows.length === 0) return null;
    return rows.map(rowToEvent).sort((a, b) => a.seq - b.seq);
  }

  async readOutput(sessionId: string, afterSeq: number, limit: number): Promise<OutputEvent[] | null> {
    const rows = await this.db.query<Row>(
      `SELECT o.seq, o.run_id, o.type, o.data, o.created_at FROM sessions s
       LEFT JOIN LATERAL (
         SELECT * FROM run_output x WHERE x.session_id = s.id AND x.seq > $2 ORDER BY x.seq LIMIT $3
       ) o ON true
       WHERE s.id = $1::uuid ORDER BY o.seq`,
      [sessionId, afterSeq, limit],
    );
    if (rows.length === 0) return null;
    return rows.filter((r) => r.seq !== null).map(rowToEvent);
  }

  finalize(req: FinalizeRequest): Promise<FinalizeResult | null> {
    return this.db.transaction((tx) => this.finalizeIn(tx, req));
  }

  private async finalizeIn(tx: SqlExecutor, req: FinalizeRequest): Promise<FinalizeResult | null> {
    const sweep = req.owner === null;
    // The sweep claims with SKIP LOCKED: a session another instance is finalizing is left to it.
    const [cur] = await tx.query<Row>(
      `SELECT s.*, ${liveSql('s')} AS live FROM sessions s WHERE s.id = $1::uuid FOR UPDATE${sweep ? ' SKIP LOCKED' : ''}`,
      [req.sessionId],
    );
    if (!cur) return null;
    const [before] = await tx.query<Row>(
      `SELECT status FROM runs
       WHERE id = $1::uuid AND session_id = $2::uuid AND status IN ('running', 'queued')
         AND ($3::text IS NULL OR owner = $3) AND ($4::boolean = false OR lease_expires_at < now())
       FOR UPDATE`,
      [req.runId, req.sessionId, req.owner, sweep],
    );
    if (!before) return null;
    const wasRunning = before.status === 'running';
    let seq = Number(cur.output_seq);
    const endSeq = wasRunning ? ++seq : null;
    const [ended] = await tx.query<Row>(
      `UPDATE runs SET status = $2, end_reason = $3, error = $4, ended_at = now(), lease_expires_at = NULL, end_seq = $5
       WHERE id = $1::uuid RETURNING *`,
      [req.runId, req.status, req.reason, req.error, endSeq],
    );
    const run = rowToRun(ended as Row);
    const events: OutputEvent[] = [];
    const outbox: OutboxEvent[] = [{ type: RUN_EVENT_TYPES[req.status] ?? 'run.failed', payload: runPayload(run) }];
    if (endSeq !== null) {
      const data = {
        run_id: run.id,
        status: req.status,
        reason: req.reason,
        ...(req.error === null ? {} : { error: req.error }),
        ...(req.details ?? {}),
      };
      const [event] = await tx.query<Row>(
        `INSERT INTO run_output (session_id, seq, run_id, type, data) VALUES ($1::uuid, $2, $3::uuid, $4, $5::jsonb) RETURNING *`,
        [req.sessionId, endSeq, req.runId, req.status === 'failed' ? 'error' : 'done', JSON.stringify(data)],
      );
      events.push(rowToEvent(event as Row));
    }
    let queued = Number(cur.queued_runs) - (wasRunning ? 0 : 1);
    let promoted: Run | null = null;
    const cancelled: Run[] = [];
    if (wasRunning && queued > 0 && cur.live !== true) {
      // The session ended: what waited behind this run will never start.
      const rows = await tx.query<Row>(
        `UPDATE runs SET status = 'interrupted', end_reason = 'session_ended', ended_at = now(), lease_expires_at = NULL
         WHERE session_id = $1::uuid AND status = 'queued' RETURNING *`,
        [req.sessionId],
      );
      for (const r of rows) cancelled.push(rowToRun(r));
      for (const r of cancelled) outbox.push({ type: 'run.interrupted', payload: runPayload(r) });
      queued = 0;
    } else if (wasRunning && queued > 0) {
      const startSeq = ++seq;
      const [next] = await tx.query<Row>(
        `UPDATE runs SET status = 'running', started_at = now(), lease_expires_at = ${LEASE('$3')}, start_seq = $2
         WHERE id = (SELECT id FROM runs WHERE session_id = $1::uuid AND status = 'queued' ORDER BY created_at, id LIMIT 1 FOR UPDATE)
         RETURNING *`,
        [req.sessionId, startSeq, req.leaseMs],
      );
      if (next) {
        promoted = rowToRun(next);
        queued -= 1;
        const [event] = await tx.query<Row>(
          `INSERT INTO run_output (session_id, seq, run_id, type, data)
           VALUES ($1::uuid, $2, $3::uuid, 'status', jsonb_build_object('state', 'running', 'run_id', $3::text)) RETURNING *`,
          [req.sessionId, startSeq, promoted.id],
        );
        events.push(rowToEvent(event as Row));
        outbox.push({ type: 'run.started', payload: { run_id: promoted.id, input: promoted.input, owner: promoted.owner } });
      } else {
        seq -= 1;
        queued = 0;
      }
    }
    const runningId = wasRunning ? (promoted?.id ?? null) : (cur.running_run_id ?? null);
    // The session leaves `active` only when nothing else runs and it is still live.
    const newStatus = wasRunning && !promoted && cur.status === 'active' && cur.live === true ? req.sessionStatus : null;
    const [updated] = await tx.query<Row>(
      `UPDATE sessions s SET output_seq = $2, running_run_id = $3::uuid, queued_runs = $4,
         status = COALESCE($5, s.status),
         version = s.version + CASE WHEN $5::text IS NULL THEN 0 ELSE 1 END,
         updated_at = CASE WHEN $5::text IS NULL THEN s.updated_at ELSE now() END,
         last_active_at = CASE WHEN $5::text IS NULL THEN s.last_active_at ELSE now() END,
         expires_at = CASE WHEN $5::text IS NULL THEN s.expires_at ELSE ${SLIDE_EXPIRY_SQL} END
       WHERE s.id = $1::uuid RETURNING s.*`,
      [req.sessionId, seq, runningId, queued, newStatus],
    );
    if (newStatus !== null && newStatus !== cur.status) {
      outbox.unshift({
        type: 'session.status_changed',
        payload: { from: cur.status, to: newStatus, version: Number((updated as Row).version) },
      });
    }
    await this.outbox(tx, String(cur.tenant_id), req.sessionId, outbox);
    return { run, session: newStatus === null ? null : rowToSession(updated as Row), events, promoted, cancelled };
  }

  async orphans(limit: number): Promise<Array<{ id: string; sessionId: string; status: RunStatus }>> {
    const rows = await this.db.query<Row>(
      `SELECT id, session_id, status FROM runs
       WHERE status IN ('running', 'queued') AND lease_expires_at < now()
       ORDER BY lease_expires_at LIMIT $1`,
      [limit],
    );
    return rows.map((r) => ({ id: String(r.id), sessionId: String(r.session_id), status: r.status as RunStatus }));
  }
}
