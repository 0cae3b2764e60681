/**
 * Runs and their output on PostgreSQL (pg or PGlite): sql/run-*.sql.
 *
 * The lifecycle's decisions (admission, finalization, interrupt) are made by the pure rules
 * of src/core/run-rules.ts on the newest rows, and carried out by one statement (run-apply,
 * the plan as jsonb, events through the one outbox writer). Two ways to get there:
 *
 * - Locked: one transaction locks the session row (run-session-lock), then the session's
 *   running and queued runs (run-active-runs, a statement of its own, so its snapshot holds
 *   every run the session's writers committed), asks the rule and applies the plan.
 * - Optimistic, for starts and an owner's finalization (two round trips instead of five):
 *   read the same rows in one snapshot (run-state), ask the rule, and have run-apply lock
 *   them and apply the plan only if they are unchanged; the rules are pure, so the locked
 *   rows would get the same decision. If they changed, the locked way decides again. A
 *   refusal stands on the snapshot: the session was busy or ended at that moment.
 *
 * Lock order is always session row, then run rows; the heartbeat takes run locks with SKIP
 * LOCKED, so it never waits in a cycle.
 */
import { sessionKey } from '../../core/ids.js';
import { NotFoundError } from '../../core/errors.js';
import { decodeCursor, encodeCursor } from '../../core/cursor.js';
import {
  admissionNeedsRuns,
  admit,
  isDeferred,
  planDuePromotion,
  planClaim,
  planFinalization,
  planInterrupt,
  planOwnerLost,
  type ActiveRun,
  type Finalization,
  type RunLockState,
  type RunWrite,
  type WritePlan,
} from '../../core/run-rules.js';
import type {
  DuePromotion,
  ClaimResult,
  FinalizeRequest,
  OnOwnerLost,
  FinalizeResult,
  HeartbeatRow,
  AppendOutcome,
  OutputBatch,
  OutputEvent,
  Run,
  RunInput,
  RunRepository,
  RunStatus,
  StartRunRequest,
  StartRunResult,
} from '../../core/runs.js';
import { noteDataJson } from '../../core/runs.js';
import type { Page, Session, SessionStatus } from '../../core/types.js';
import { sqlState, type SqlDatabase, type SqlExecutor } from './database.js';
import { iso, isoOrNull, numOrNull, rowToSession, strOrNull, type Row } from './rows.js';
import { run, statements } from './sql.js';

const SQL = statements(
  'runState',
  'runSessionLock',
  'runSessionClaim',
  'runActiveRuns',
  'runApply',
  'runGet',
  'runList',
  'runStreamStart',
  'runInterruptFlag',
  'runInputAdd',
  'runInputsRead',
  'runHeartbeat',
  'runOutputAppend',
  'runOutputAppendGroup',
  'runOutputRead',
  'runOrphans',
  'runClaimNext',
);

export function rowToRun(r: Row): Run {
  return {
    id: String(r.id),
    sessionId: String(r.session_id),
    tenantId: String(r.tenant_id),
    status: r.status as RunStatus,
    owner: strOrNull(r.owner),
    input: r.input ?? null,
    inputs: Array.isArray(r.inputs) ? (r.inputs as unknown[]) : [r.input ?? null],
    notBefore: isoOrNull(r.not_before),
    takesInput: r.takes_input === true,
    error: strOrNull(r.error),
    endReason: strOrNull(r.end_reason),
    interruptRequestedAt: isoOrNull(r.interrupt_requested_at),
    leaseExpiresAt: isoOrNull(r.lease_expires_at),
    createdAt: iso(r.created_at),
    startedAt: isoOrNull(r.started_at),
    endedAt: isoOrNull(r.ended_at),
    startSeq: numOrNull(r.start_seq),
    endSeq: numOrNull(r.end_seq),
    persistOutput: r.persist_output === true,
    agent: strOrNull(r.agent),
    onOwnerLost: r.on_owner_lost === 'retry' ? 'retry' : 'fail',
    maxRetries: Number(r.max_retries ?? 0),
    attempts: Number(r.attempts ?? 0),
  };
}

/** The run-output-append statements' batches parameter, with each event's data JSON text (`texts[batch][event]`) spliced in. */
function batchesJson(batches: readonly OutputBatch[], texts: readonly string[][]): string {
  const parts = batches.map((b, i) => {
    const events = b.events.map((e, j) => `{"type":${JSON.stringify(e.type)},"data":${texts[i]?.[j]}}`);
    return `{"tenant":${JSON.stringify(b.tenant)},"session":${JSON.stringify(b.sessionId)},"run":${JSON.stringify(b.runId)},"owner":${JSON.stringify(b.owner)},"offset":${b.offset},"events":[${events.join(',')}]}`;
  });
  return `[${parts.join(',')}]`;
}

function rowToEvent(r: Row): OutputEvent {
  return { seq: Number(r.seq), runId: String(r.run_id), type: String(r.type), data: r.data ?? null, createdAt: iso(r.created_at) };
}

/** A session's run state and its tenant, as run-state or run-session-lock (with run-active-runs) read it. */
interface SessionRuns {
  tenant: string;
  state: RunLockState;
}

function rowToActiveRun(r: Row): ActiveRun {
  return {
    id: String(r.id),
    status: r.status as ActiveRun['status'],
    owner: strOrNull(r.owner),
    leaseLapsed: r.lease_lapsed === true,
    input: r.input ?? null,
    persistOutput: r.persist_output === true,
    takesInput: r.takes_input === true,
    interruptRequested: r.interrupt_requested === true,
    startsInMs: Number(r.starts_in_ms ?? 0),
    agent: strOrNull(r.agent),
    onOwnerLost: (r.on_owner_lost === 'retry' ? 'retry' : 'fail') as OnOwnerLost,
    maxRetries: Number(r.max_retries ?? 0),
    attempts: Number(r.attempts ?? 0),
  };
}

function withRuns(state: RunLockState, runs: ActiveRun[]): RunLockState {
  return { ...state, running: runs.find((r) => r.status === 'running') ?? null, queued: runs.filter((r) => r.status === 'queued') };
}

function sessionRuns(id: string, r: Row): SessionRuns {
  return {
    tenant: String(r.tenant_id),
    state: {
      session: {
        id,
        status: r.status as SessionStatus,
        effectiveStatus: r.effective_status as SessionStatus,
        live: r.live === true,
        version: Number(r.version),
        outputSeq: Number(r.output_seq),
        runningRunId: strOrNull(r.running_run_id),
        queuedRuns: Number(r.queued_runs),
      },
      running: null,
      queued: [],
    },
  };
}

/** What run-apply wrote. */
interface Applied {
  session: Session | null;
  runs: Map<string, Run>;
  /** Each written run's last input seq (a steered run's is its new input's). */
  inputSeqs: Map<string, number>;
  events: OutputEvent[];
}

/** An admission that was not refused. */
type Admitted = Exclude<ReturnType<typeof admit>, { decision: 'refuse' }>;

/** What a decision made on a snapshot read: run-apply writes only if the locked rows still are this. */
function expectation(state: RunLockState): Record<string, unknown> {
  const s = state.session;
  return {
    status: s.status,
    version: s.version,
    output_seq: s.outputSeq,
    running_run_id: s.runningRunId,
    queued_runs: s.queuedRuns,
    live: s.live,
    runs: [...(state.running ? [state.running] : []), ...state.queued].map((r) => ({
      id: r.id,
      status: r.status,
      deferred: isDeferred(r),
      interrupted: r.interruptRequested === true,
    })),
  };
}

/** The plan in run-apply's terms (see its header). */
function applyParameter(plan: WritePlan, expect: Record<string, unknown> | null): string {
  const stop: Record<string, unknown>[] = [];
  const start: Record<string, unknown>[] = [];
  const handback: Record<string, unknown>[] = [];
  const insert: Record<string, unknown>[] = [];
  const append: Record<string, unknown>[] = [];
  const steer: Record<string, unknown>[] = [];
  for (const w of plan.runs) {
    switch (w.kind) {
      case 'end':
        stop.push({ id: w.id, ends: true, status: w.status, end_reason: w.reason, error: w.error, end_seq: w.endSeq, interrupt: w.markInterrupted });
        break;
      case 'flag':
        stop.push({ id: w.id, ends: false, interrupt: true });
        break;
      case 'promote':
        start.push({ id: w.id, start_seq: w.startSeq, lease_ms: w.leaseMs, owner: w.owner ?? null, takes_input: w.takesInput ?? null });
        break;
      case 'handback':
        handback.push({ id: w.id });
        break;
      case 'insert':
        insert.push({
          id: w.id,
          status: w.status,
          owner: w.owner,
          input: w.input ?? null,
          start_seq: w.startSeq,
          lease_ms: w.leaseMs,
          persist_output: w.persistOutput,
          takes_input: w.takesInput,
          defer_ms: w.deferMs,
          agent: w.agent ?? null,
          on_owner_lost: w.onOwnerLost ?? 'fail',
          max_retries: w.maxRetries ?? 0,
        });
        break;
      case 'append':
        append.push({ id: w.id, input: w.input ?? null, defer_ms: w.deferMs });
        break;
      case 'steer':
        steer.push({ id: w.id, input: w.input ?? null });
        break;
    }
  }
  const s = plan.session;
  return JSON.stringify({
    expect: expect ? [expect] : [],
    session: s ? [{ output_seq: s.outputSeq, running_run_id: s.runningRunId, queued_runs: s.queuedRuns, status: s.status }] : [],
    stop,
    start,
    handback,
    insert,
    append,
    steer,
    output: plan.output.map((e) => ({ seq: e.seq, run_id: e.runId, type: e.type, data: e.data })),
    outbox: plan.outbox,
    persist: plan.persist ? [{ run_id: plan.persist.runId }] : [],
    counters: plan.counters
      ? [{ input_tokens: plan.counters.inputTokens, output_tokens: plan.counters.outputTokens, total_cost_usd: plan.counters.totalCostUsd }]
      : [],
  });
}

function written(runs: Map<string, Run>, plan: WritePlan, kind: RunWrite['kind']): Run[] {
  return plan.runs.filter((w) => w.kind === kind).flatMap((w) => runs.get(w.id) ?? []);
}

function startResult(admitted: Admitted, applied: Applied): StartRunResult {
  const { plan, runId } = admitted;
  const run = applied.runs.get(runId);
  if (!run) throw new Error(`run-apply did not write run ${runId}`);
  return {
    run,
    decision: admitted.decision,
    created: admitted.created,
    inputSeq: admitted.decision === 'steered' ? (applied.inputSeqs.get(runId) ?? null) : null,
    session: applied.session,
    events: applied.events,
    interrupted: written(applied.runs, plan, 'flag'),
    cancelled: written(applied.runs, plan, 'end'),
    promoted: null,
  };
}

function finalizeResult(runId: string, decided: Finalization, applied: Applied): FinalizeResult {
  const ended = applied.runs.get(runId);
  if (!ended) throw new Error(`run-apply did not end run ${runId}`);
  return {
    run: ended,
    session: applied.session,
    events: applied.events,
    promoted: decided.promoted === null ? null : (applied.runs.get(decided.promoted) ?? null),
    cancelled: decided.cancelled.flatMap((id) => applied.runs.get(id) ?? []),
    claimable: decided.claimable,
  };
}

export class PostgresRunRepository implements RunRepository {
  constructor(private readonly db: SqlDatabase) {}

  /** Locks the session row (skipping it when another transaction holds it, with `claim`). */
  private async lockSession(tx: SqlExecutor, id: string, tenant: string, claim = false): Promise<SessionRuns | null> {
    const [row] = claim ? await run(tx, SQL.runSessionClaim, { id, tenant }) : await run(tx, SQL.runSessionLock, { id, tenant });
    return row ? sessionRuns(id, row) : null;
  }

  /**
   * Locks the session's running and queued runs (after its row) and adds them to the state,
   * with the running run's appends in the last seq (the session row does not count them).
   */
  private async lockRuns(tx: SqlExecutor, locked: SessionRuns): Promise<void> {
    const rows = await run(tx, SQL.runActiveRuns, { session: locked.state.session.id, tenant: locked.tenant });
    const appended = numOrNull(rows[0]?.last_seq);
    const session = locked.state.session;
    if (appended !== null && appended > session.outputSeq) locked.state = { ...locked.state, session: { ...session, outputSeq: appended } };
    locked.state = withRuns(locked.state, rows.map(rowToActiveRun));
  }

  /** The session's run state and its runs in one snapshot, without locks (the optimistic way). */
  private async readState(id: string, tenant: string): Promise<SessionRuns | null> {
    const [row] = await run(this.db, SQL.runState, { id, tenant });
    if (!row) return null;
    const seen = sessionRuns(id, row);
    seen.state = withRuns(seen.state, (row.runs as Row[]).map(rowToActiveRun));
    return seen;
  }

  /**
   * Applies a plan made on `on`: rows this transaction holds (`db` the transaction), or a
   * snapshot (`snapshot`), in which case null means the rows changed and nothing was written.
   */
  private async apply(db: SqlExecutor, on: SessionRuns, plan: WritePlan, snapshot = false): Promise<Applied | null> {
    const parameter = applyParameter(plan, snapshot ? expectation(on.state) : null);
    let row: Row | undefined;
    try {
      [row] = await run(db, SQL.runApply, { session: on.state.session.id, tenant: on.tenant, plan: parameter });
    } catch (err) {
      // An append that held the session row as this statement waited for it committed seqs this
      // statement's snapshot does not see, and one of them is the seq the plan gave its event:
      // the rows changed (the locked way reads them after the lock).
      if (snapshot && sqlState(err) === '23505' && (err as { constraint?: unknown }).constraint === 'run_output_pkey') return null;
      throw err;
    }
    const r = row as Row;
    if (r.applied !== true) return null;
    // Locked or unchanged, the session row is there; a plan that wrote nothing to it would be a defect.
    if (plan.session && Number(r.sessions_written) !== 1) throw new Error(`run-apply wrote no session row for ${on.state.session.id}`);
    return {
      session: r.session ? rowToSession(r.session as Row) : null,
      runs: new Map((r.runs as Row[]).map((x) => [String(x.id), rowToRun(x)])),
      inputSeqs: new Map((r.runs as Row[]).map((x) => [String(x.id), Number(x.input_seq)])),
      events: (r.events as Row[]).map(rowToEvent),
    };
  }

  /** Applies a plan made on rows this transaction holds. */
  private async applyLocked(tx: SqlExecutor, on: SessionRuns, plan: WritePlan): Promise<Applied> {
    const applied = await this.apply(tx, on, plan);
    if (!applied) throw new Error(`run-apply refused a plan made on locked rows of ${on.state.session.id}`);
    return applied;
  }

  async start(req: StartRunRequest): Promise<StartRunResult> {
    const seen = await this.readState(req.sessionId, req.tenant);
    if (!seen) throw new NotFoundError('session', req.sessionId);
    // Runs the rule will not look at need not be unchanged (nor locked) for the plan to hold.
    if (!admissionNeedsRuns(seen.state.session, req.ifBusy)) seen.state = withRuns(seen.state, []);
    const first = this.admit(seen.state, req);
    const applied = await this.apply(this.db, seen, first.plan, true);
    if (applied) return startResult(first, applied);
    // The rows changed since the snapshot: decide again on them, locked.
    return this.db.transaction(async (tx) => {
      const locked = await this.lockSession(tx, req.sessionId, req.tenant);
      if (!locked) throw new NotFoundError('session', req.sessionId);
      if (admissionNeedsRuns(locked.state.session, req.ifBusy)) await this.lockRuns(tx, locked);
      const admitted = this.admit(locked.state, req);
      return startResult(admitted, await this.applyLocked(tx, locked, admitted.plan));
    });
  }

  /** The admission's plan; a refusal is thrown. */
  private admit(state: RunLockState, req: StartRunRequest): Admitted {
    const admission = admit(state, {
      runId: req.runId,
      owner: req.owner,
      input: req.input ?? null,
      ifBusy: req.ifBusy,
      maxQueued: req.maxQueued,
      leaseMs: req.leaseMs,
      persistOutput: req.persistOutput,
      debounceMs: req.debounceMs,
      takesInput: req.takesInput,
      agent: req.agent ?? null,
      onOwnerLost: req.onOwnerLost,
      maxRetries: req.maxRetries,
      startHere: req.startHere,
    });
    if (admission.decision === 'refuse') throw admission.error;
    return admission;
  }

  async get(tenant: string, sessionId: string, runId: string): Promise<Run | null> {
    const [row] = await run(this.db, SQL.runGet, { id: runId, session: sessionId, tenant });
    return row ? rowToRun(row) : null;
  }

  async list(tenant: string, sessionId: string, query: { cursor?: string; limit: number }): Promise<Page<Run> | null> {
    let before: string | null = null;
    if (query.cursor !== undefined) {
      before = decodeCursor(query.cursor, (v): v is { r: string } =>
        typeof v === 'object' && v !== null && typeof (v as { r?: unknown }).r === 'string' &&
        /^[0-9a-f-]{36}$/i.test((v as { r: string }).r),
      ).r;
    }
    const rows = await run(this.db, SQL.runList, { session: sessionId, tenant, before, limit: query.limit + 1 });
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
    const [row] = await run(this.db, SQL.runStreamStart, { session: sessionId, tenant });
    if (!row) return null;
    return { outputSeq: Number(row.output_seq), run: row.run ? rowToRun(row.run as Row) : null };
  }

  async requestInterrupt(tenant: string, sessionId: string, runId: string | undefined, leaseMs?: number): Promise<Run[] | null> {
    // The common case touches only the run row, so it never queues behind output appends.
    const flagged = await run(this.db, SQL.runInterruptFlag, { session: sessionId, tenant, run: runId ?? null });
    if (flagged.length > 0) return flagged.map(rowToRun);
    // Nothing ran as that statement began: decide again on the locked rows, which also see a
    // queued run promoted meanwhile, and cancel a queued run the caller named.
    return this.db.transaction(async (tx) => {
      const locked = await this.lockSession(tx, sessionId, tenant);
      if (!locked) return null;
      await this.lockRuns(tx, locked);
      const decided = planInterrupt(locked.state, runId, leaseMs);
      if (!decided.plan) return [];
      const applied = await this.applyLocked(tx, locked, decided.plan);
      return [...applied.runs.values()];
    });
  }

  async addInput(
    tenant: string,
    sessionId: string,
    runId: string | undefined,
    data: unknown,
  ): Promise<{ run: Run | null; seq: number } | null> {
    const values = { session: sessionId, tenant, run: runId ?? null, data: JSON.stringify(data ?? null) };
    let [row] = await run(this.db, SQL.runInputAdd, values);
    if (row && !row.run) {
      // No run was running as the statement began: try again behind the session's lock, whose
      // holders (a finalization promoting the next run) have then committed.
      [row] = await this.db.transaction(async (tx) => {
        if (!(await this.lockSession(tx, sessionId, tenant))) return [];
        return run(tx, SQL.runInputAdd, values);
      });
    }
    if (!row || row.session_exists !== true) return null;
    if (!row.run) return { run: null, seq: 0 };
    const stored = row.run as Row;
    return { run: rowToRun(stored), seq: Number(stored.input_seq) };
  }

  async readInputs(runId: string, afterSeq: number): Promise<RunInput[]> {
    const rows = await run(this.db, SQL.runInputsRead, { run: runId, after: afterSeq });
    return rows.map((r) => ({ seq: Number(r.seq), data: r.data }));
  }

  async heartbeat(owner: string, runIds: readonly string[], leaseMs: number): Promise<HeartbeatRow[]> {
    if (runIds.length === 0) return [];
    const rows = await run(this.db, SQL.runHeartbeat, { owner, ids: JSON.stringify(runIds), leaseMs });
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

  async appendOutput(batches: readonly OutputBatch[], options: { wait?: boolean } = {}): Promise<AppendOutcome[]> {
    if (batches.length === 0) return [];
    const wait = options.wait ?? true;
    // Each event's data as JSON text: as the writer has it, else serialized here, once.
    const texts = batches.map((b) => b.events.map((e) => e.json ?? JSON.stringify(e.data ?? null)));
    const rows = await run(this.db, wait ? SQL.runOutputAppend : SQL.runOutputAppendGroup, { batches: batchesJson(batches, texts) });
    // One row per session locked: its batch's last seq (null: its run is not running there).
    const stored = new Map<string, { last: number | null; createdAt: string }>();
    for (const r of rows) {
      stored.set(sessionKey(String(r.tenant_id), String(r.id)), { last: numOrNull(r.output_seq), createdAt: iso(r.created_at) });
    }
    return batches.map((b, i) => {
      const outcome = stored.get(sessionKey(b.tenant, b.sessionId));
      if (!wait && !outcome) return 'busy';
      if (b.events.length === 0) return [];
      if (!outcome || outcome.last === null) return null;
      // The batch's events, in order, got the seqs up to `last`.
      const first = outcome.last - b.events.length + 1;
      return b.events.map((e, j) =>
        noteDataJson({ seq: first + j, runId: b.runId, type: e.type, data: e.data ?? null, createdAt: outcome.createdAt }, texts[i]?.[j] ?? 'null'),
      );
    });
  }

  async readOutput(tenant: string, sessionId: string, afterSeq: number, limit: number): Promise<OutputEvent[] | null> {
    const rows = await run(this.db, SQL.runOutputRead, { session: sessionId, tenant, after: afterSeq, limit });
    if (rows.length === 0) return null;
    return rows.filter((r) => r.seq !== null).map(rowToEvent);
  }

  async finalize(req: FinalizeRequest): Promise<FinalizeResult | null> {
    // A lost owner's run may be handed back instead (its owner-lost policy).
    const plan = req.ownerLost === true ? planOwnerLost : planFinalization;
    // The sweep claims sessions with SKIP LOCKED (one another instance is finalizing is left
    // to it), so it takes the locked way; an owner ending its run tries the snapshot first.
    if (req.owner !== null) {
      const seen = await this.readState(req.sessionId, req.tenant);
      if (!seen) return null;
      // Not running or queued, or not this owner's, in a snapshot: it never will be again.
      const first = plan(seen.state, req);
      if (!first) return null;
      const applied = await this.apply(this.db, seen, first.plan, true);
      if (applied) return finalizeResult(req.runId, first, applied);
    }
    return this.db.transaction(async (tx) => {
      const locked = await this.lockSession(tx, req.sessionId, req.tenant, req.owner === null);
      if (!locked) return null;
      await this.lockRuns(tx, locked);
      const decided = plan(locked.state, req);
      if (!decided) return null;
      return finalizeResult(req.runId, decided, await this.applyLocked(tx, locked, decided.plan));
    });
  }

  async promoteDue(tenant: string, sessionId: string, runId: string, leaseMs: number): Promise<DuePromotion> {
    return this.db.transaction(async (tx) => {
      const none: DuePromotion = { run: null, session: null, events: [], waitMs: null };
      const locked = await this.lockSession(tx, sessionId, tenant);
      if (!locked) return none;
      await this.lockRuns(tx, locked);
      const decided = planDuePromotion(locked.state, runId, leaseMs);
      if (decided.kind === 'none') return none;
      if (decided.kind === 'wait') return { ...none, waitMs: decided.waitMs };
      const applied = await this.applyLocked(tx, locked, decided.plan);
      const written = applied.runs.get(runId) ?? null;
      return { run: written, session: applied.session, events: applied.events, waitMs: null };
    });
  }

  async claim(owner: string, agent: string, limit: number, leaseMs: number, takesInput = false): Promise<ClaimResult> {
    const result: ClaimResult = { claimed: [], ended: [] };
    // One transaction per run: a claim holds its session row only as long as its own write.
    for (let i = 0; i < limit; i++) {
      const done = await this.db.transaction(async (tx) => {
        const [next] = await run(tx, SQL.runClaimNext, { agent });
        if (!next) return false;
        const id = String(next.session_id);
        const tenant = String(next.tenant_id);
        const [row] = await run(tx, SQL.runSessionLock, { id, tenant });
        if (!row) return true;
        const locked = sessionRuns(id, row);
        await this.lockRuns(tx, locked);
        const runId = String(next.id);
        const decided = planClaim(locked.state, { runId, owner, leaseMs, takesInput });
        if (decided.decision === 'skip') return true;
        const applied = await this.applyLocked(tx, locked, decided.plan);
        if (decided.decision === 'claim') {
          const claimed = applied.runs.get(runId);
          if (!claimed) throw new Error(`run-apply did not start run ${runId}`);
          result.claimed.push({ run: claimed, session: applied.session, events: applied.events });
        } else {
          const ended = decided.cancelled.flatMap((r) => applied.runs.get(r) ?? []);
          const first = ended[0];
          if (first) result.ended.push({ run: first, session: applied.session, events: applied.events, promoted: null, cancelled: ended.slice(1) });
        }
        return true;
      });
      if (!done) break;
    }
    return result;
  }

  async orphans(limit: number): Promise<Array<{ id: string; tenant: string; sessionId: string; status: RunStatus }>> {
    const rows = await run(this.db, SQL.runOrphans, { limit });
    return rows.map((r) => ({
      id: String(r.id),
      tenant: String(r.tenant_id),
      sessionId: String(r.session_id),
      status: r.status as RunStatus,
    }));
  }
}
