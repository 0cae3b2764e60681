/**
 * The run lifecycle's decisions (SPEC §7) as pure functions: which start is admitted and how,
 * what a finalization writes, what an interrupt changes. Plain data in (the session row and
 * its running and queued runs, as the caller locked them), a plan out; no I/O, no clock. The
 * repository reads the rows under lock, asks here, and carries the plan out in the same
 * transaction, so every check is made against the newest rows.
 */
import { AgentSessionsError, ConflictError, RunError } from './errors.js';
import { checkRunsQueued } from './limits.js';
import type { EndedRunStatus, FinalizeRequest, IfBusy, OnOwnerLost, RunUsage } from './runs.js';
import { canTransition, ENDED_STATUSES, type SessionStatus } from './types.js';

/** A session's run bookkeeping, from its locked row. */
export interface SessionRunState {
  id: string;
  /** The stored status. */
  status: SessionStatus;
  /** The status a reader sees (expired once past a deadline); named when a start is refused. */
  effectiveStatus: SessionStatus;
  /** Whether the session takes writes now: not ended, before its expiry and idle deadline (by the database's clock). */
  live: boolean;
  version: number;
  /** The last allocated output seq. */
  outputSeq: number;
  runningRunId: string | null;
  queuedRuns: number;
}

/** A running or queued run, from its locked row. */
export interface ActiveRun {
  id: string;
  status: 'running' | 'queued';
  owner: string | null;
  /** Whether its lease lapsed (by the database's clock): its owner stopped renewing it. */
  leaseLapsed: boolean;
  /** The run's input; read only for the head of the queue, which a finalization may start. */
  input?: unknown;
  /** Whether its text output goes to the history when it ends (read for the running run). */
  persistOutput?: boolean;
  /** Its agent; null (or absent): a closure run, pinned to its owner. */
  agent?: string | null;
  /** Its owner-lost policy (read for the running run); absent: `fail`. */
  onOwnerLost?: OnOwnerLost;
  maxRetries?: number;
  /** Restarts so far. */
  attempts?: number;
}

/**
 * A session and the runs behind its bookkeeping, read under one lock: `running` is the run
 * `runningRunId` names and `queued` holds the queued runs in queue order. A start on a session
 * with no run may leave both empty without reading them.
 */
export interface RunLockState {
  session: SessionRunState;
  running: ActiveRun | null;
  queued: readonly ActiveRun[];
}

/** An output event a plan writes (the `status` event that opens a run, the terminal event that ends it). */
export interface PlannedOutput {
  seq: number;
  runId: string;
  type: string;
  data: Record<string, unknown>;
}

/** An outbox event, in the order it is written. */
export interface PlannedEvent {
  type: string;
  payload: Record<string, unknown>;
}

export interface SessionWrite {
  outputSeq: number;
  runningRunId: string | null;
  queuedRuns: number;
  /**
   * Set when the write is activity: the session takes this status, its version goes up by one,
   * updated_at and last_active_at become now and its expiry slides. Null leaves all of them.
   */
  status: SessionStatus | null;
}

export type RunWrite =
  /** A new run row; its lease starts now. */
  | {
      kind: 'insert';
      id: string;
      status: 'running' | 'queued';
      /** Null: an agent run queued for a worker to claim (no lease either). */
      owner: string | null;
      input: unknown;
      startSeq: number | null;
      leaseMs: number | null;
      persistOutput: boolean;
      agent?: string | null;
      onOwnerLost?: OnOwnerLost;
      maxRetries?: number;
    }
  /** A queued run starts: running, started now, a fresh lease; `owner` set: a worker claimed it. */
  | { kind: 'promote'; id: string; startSeq: number; leaseMs: number; owner?: string }
  /** A running run whose owner is lost goes back to the queue: no owner, no lease, attempts + 1. */
  | { kind: 'handback'; id: string }
  /** The run ends now and lets go of its lease; `markInterrupted` records an interrupt request if none was. */
  | { kind: 'end'; id: string; status: EndedRunStatus; reason: string; error: string | null; endSeq: number | null; markInterrupted: boolean }
  /** The running run is asked to stop (its owner aborts it). */
  | { kind: 'flag'; id: string };

/** Everything one decision writes, in one transaction. */
export interface WritePlan {
  /** Null leaves the session row alone. */
  session: SessionWrite | null;
  runs: RunWrite[];
  output: PlannedOutput[];
  outbox: PlannedEvent[];
  /**
   * A run whose text output becomes one assistant message of the history (issue 11): the
   * adapter builds it from the run's archived `text` events and appends it in the same
   * transaction, as an append does (next item seq, activity, `item.added`); nothing when the
   * run streamed no text. Absent: nothing is appended.
   */
  persist?: { runId: string };
  /** Added to the session's counters (a run's reported usage), in the same write. */
  counters?: UsageCounters;
}

/** The session counters a run's usage adds to. */
export interface UsageCounters {
  inputTokens: number;
  outputTokens: number;
  totalCostUsd: number;
}

// ---------------------------------------------------------------------------------------
// Admission

export interface AdmissionRequest {
  runId: string;
  owner: string;
  input: unknown;
  ifBusy: IfBusy;
  maxQueued: number;
  leaseMs: number;
  /** Default false. */
  persistOutput?: boolean;
  /** The agent of an agent run; null or absent: a closure run, pinned to `owner`. */
  agent?: string | null;
  onOwnerLost?: OnOwnerLost;
  maxRetries?: number;
  /**
   * An agent run only: `owner` serves the agent and has a free slot, so an idle session
   * starts it there; false queues it unowned for a worker to claim. Default true.
   */
  startHere?: boolean;
}

export type Admission =
  /** The run starts now: running, the session `active`. */
  | { decision: 'start'; plan: WritePlan }
  /** The run waits behind the running one (which `interrupt` asked to stop, cancelling what was queued). */
  | { decision: 'queue'; plan: WritePlan }
  | { decision: 'refuse'; error: AgentSessionsError };

export function isBusy(s: SessionRunState): boolean {
  return s.runningRunId !== null || s.queuedRuns > 0;
}

/** Whether the session can take no more runs (or anything else): ended, or past a deadline. */
export function isEnded(s: SessionRunState): boolean {
  return !s.live || ENDED_STATUSES.includes(s.effectiveStatus);
}

/**
 * Whether `admit` looks at the runs behind the session's bookkeeping: only an interrupt of a
 * busy session touches them, so the other starts need not read (and lock) them.
 */
export function admissionNeedsRuns(s: SessionRunState, ifBusy: IfBusy): boolean {
  return ifBusy === 'interrupt' && isBusy(s) && !isEnded(s);
}

/**
 * Decides a start. An ended session refuses (`session_ended`); a busy one follows `ifBusy`:
 * `reject` refuses (`run_in_progress`), `enqueue` queues up to `maxQueued` (`queue_full`),
 * `interrupt` flags the running run, cancels the queued ones and queues this one behind it.
 * A session with no run starts it, unless its status cannot become `active`.
 */
export function admit(state: RunLockState, req: AdmissionRequest): Admission {
  const s = state.session;
  if (isEnded(s)) {
    return refuse(new ConflictError('session_ended', `session ${s.id} is ${s.effectiveStatus}`, { status: s.effectiveStatus }));
  }
  if (isBusy(s)) {
    switch (req.ifBusy) {
      case 'reject':
        return refuse(
          new RunError('run_in_progress', `session ${s.id} already has a run`, { runId: s.runningRunId ?? undefined }),
        );
      case 'enqueue': {
        const full = queueFull(s.queuedRuns, req.maxQueued);
        return full ? refuse(full) : { decision: 'queue', plan: queue(s, req, s.queuedRuns + 1, [], []) };
      }
      case 'interrupt': {
        const flag: RunWrite[] = state.running ? [{ kind: 'flag', id: state.running.id }] : [];
        const cancel = state.queued.map((r): RunWrite => ({
          kind: 'end',
          id: r.id,
          status: 'interrupted',
          reason: 'interrupted',
          error: null,
          endSeq: null,
          markInterrupted: true,
        }));
        const events = state.queued.map((r) => runEndedEvent(r.id, 'interrupted', 'interrupted', null));
        return { decision: 'queue', plan: queue(s, req, s.queuedRuns - cancel.length + 1, [...flag, ...cancel], events) };
      }
    }
  }
  if (isAgentRun(req) && req.startHere === false) {
    return { decision: 'queue', plan: queue(s, req, s.queuedRuns + 1, [], []) };
  }
  if (!canTransition(s.status, 'active')) {
    return refuse(
      new ConflictError('invalid_transition', `session ${s.id} cannot start a run from ${s.effectiveStatus}`, {
        status: s.effectiveStatus,
      }),
    );
  }
  const seq = s.outputSeq + 1;
  const outbox: PlannedEvent[] = [];
  if (s.status !== 'active') outbox.push(statusChanged(s, 'active'));
  outbox.push(runStartedEvent(req.runId, req.input, req.owner));
  return {
    decision: 'start',
    plan: {
      session: { outputSeq: seq, runningRunId: req.runId, queuedRuns: s.queuedRuns, status: 'active' },
      runs: [
        {
          kind: 'insert',
          id: req.runId,
          status: 'running',
          owner: req.owner,
          input: req.input,
          startSeq: seq,
          leaseMs: req.leaseMs,
          persistOutput: req.persistOutput ?? false,
          ...runPolicy(req),
        },
      ],
      output: [runningEvent(seq, req.runId)],
      outbox,
    },
  };
}

function queue(s: SessionRunState, req: AdmissionRequest, queuedRuns: number, runs: RunWrite[], outbox: PlannedEvent[]): WritePlan {
  return {
    session: { outputSeq: s.outputSeq, runningRunId: s.runningRunId, queuedRuns, status: null },
    runs: [
      ...runs,
      {
        kind: 'insert',
        id: req.runId,
        status: 'queued',
        // A queued agent run waits for a worker to claim it: no owner, no lease.
        owner: isAgentRun(req) ? null : req.owner,
        input: req.input,
        startSeq: null,
        leaseMs: isAgentRun(req) ? null : req.leaseMs,
        persistOutput: req.persistOutput ?? false,
        ...runPolicy(req),
      },
    ],
    output: [],
    outbox,
  };
}

function queueFull(queued: number, max: number): AgentSessionsError | null {
  try {
    checkRunsQueued({ runsQueuedPerSession: max }, queued);
    return null;
  } catch (err) {
    return err as AgentSessionsError;
  }
}

function refuse(error: AgentSessionsError): Admission {
  return { decision: 'refuse', error };
}

// ---------------------------------------------------------------------------------------
// Finalization

/** What ending a run asks for (the port's request without the session, which the state names). */
export type FinalizationRequest = Omit<FinalizeRequest, 'sessionId' | 'tenant'>;

export interface Finalization {
  plan: WritePlan;
  /** The queued run that starts now, if any. */
  promoted: string | null;
  /** Queued runs ended without running because the session ended. */
  cancelled: string[];
  /** Agents whose workers may claim a run now (the head of the queue was left for them, or handed back). */
  claimable: string[];
}

/**
 * Plans the end of a run: null when it is not running or queued any more, not the caller's,
 * or (for the sweep) still leased. A running run gets its terminal event (`done`, or `error`
 * when it failed); then, if the session is live, the head of the queue starts (its `status`
 * event and `run.started`), and if it has ended, what was queued is ended too
 * (`session_ended`). The session leaves `active` only when nothing else runs and it is live.
 *
 * A running run that asked to persist its output and ends completed or interrupted (what the
 * assistant said before it was stopped) has it appended to the history, if the session is
 * live (an ended session takes no items); a failed run's partial output is not.
 */
export function planFinalization(state: RunLockState, req: FinalizationRequest): Finalization | null {
  const s = state.session;
  const run = state.running?.id === req.runId ? state.running : state.queued.find((r) => r.id === req.runId);
  if (!run) return null;
  if (req.owner === null ? !run.leaseLapsed : run.owner !== req.owner) return null;
  const wasRunning = run.status === 'running';
  const waiting = state.queued.filter((r) => r.id !== req.runId);
  let seq = s.outputSeq;
  const endSeq = wasRunning ? ++seq : null;
  const runs: RunWrite[] = [
    { kind: 'end', id: run.id, status: req.status, reason: req.reason, error: req.error, endSeq, markInterrupted: false },
  ];
  const output: PlannedOutput[] = [];
  const outbox: PlannedEvent[] = [runEndedEvent(run.id, req.status, req.reason, req.error)];
  if (endSeq !== null) {
    output.push({
      seq: endSeq,
      runId: run.id,
      type: req.status === 'failed' ? 'error' : 'done',
      data: {
        run_id: run.id,
        status: req.status,
        reason: req.reason,
        ...(req.error === null ? {} : { error: req.error }),
        ...(req.details ?? {}),
      },
    });
  }
  let queuedRuns = waiting.length;
  let promoted: ActiveRun | null = null;
  const cancelled: string[] = [];
  const claimable: string[] = [];
  if (wasRunning && waiting.length > 0 && !s.live) {
    // The session ended: what waited behind this run will never start.
    for (const r of waiting) {
      runs.push({ kind: 'end', id: r.id, status: 'interrupted', reason: 'session_ended', error: null, endSeq: null, markInterrupted: false });
      outbox.push(runEndedEvent(r.id, 'interrupted', 'session_ended', null));
      cancelled.push(r.id);
    }
    queuedRuns = 0;
  } else if (wasRunning && waiting.length > 0 && isClaimable(waiting[0] as ActiveRun)) {
    // An agent run is claimed by a worker serving its agent, wherever it is.
    claimable.push((waiting[0] as ActiveRun).agent as string);
  } else if (wasRunning && waiting.length > 0) {
    promoted = waiting[0] as ActiveRun;
    const startSeq = ++seq;
    runs.push({ kind: 'promote', id: promoted.id, startSeq, leaseMs: req.leaseMs });
    output.push(runningEvent(startSeq, promoted.id));
    outbox.push(runStartedEvent(promoted.id, promoted.input ?? null, promoted.owner));
    queuedRuns -= 1;
  }
  const runningRunId = wasRunning ? (promoted?.id ?? null) : s.runningRunId;
  const status = wasRunning && !promoted && s.status === 'active' && s.live ? req.sessionStatus : null;
  if (status !== null && status !== s.status) outbox.unshift(statusChanged(s, status));
  const persist = wasRunning && run.persistOutput === true && req.status !== 'failed' && s.live;
  return {
    plan: {
      session: { outputSeq: seq, runningRunId, queuedRuns, status },
      runs,
      output,
      outbox,
      ...(persist ? { persist: { runId: run.id } } : {}),
      ...usageCounters(req.usage),
    },
    promoted: promoted?.id ?? null,
    cancelled,
    claimable,
  };
}

// ---------------------------------------------------------------------------------------
// Interrupt

export interface InterruptPlan {
  /** Null when there is nothing to change. */
  plan: WritePlan | null;
  /** The running run asked to stop. */
  flagged: string | null;
  /** The queued run cancelled (it never starts). */
  cancelled: string | null;
}

/**
 * An interrupt decided on the locked rows: the running run (or the one `runId` names, if it
 * runs) is flagged; a queued run `runId` names is cancelled outright, so it never starts.
 */
export function planInterrupt(state: RunLockState, runId: string | undefined): InterruptPlan {
  const running = state.running;
  if (running && (runId === undefined || runId === running.id)) {
    return { plan: { session: null, runs: [{ kind: 'flag', id: running.id }], output: [], outbox: [] }, flagged: running.id, cancelled: null };
  }
  const queued = runId === undefined ? undefined : state.queued.find((r) => r.id === runId);
  if (!queued) return { plan: null, flagged: null, cancelled: null };
  const s = state.session;
  return {
    plan: {
      session: { outputSeq: s.outputSeq, runningRunId: s.runningRunId, queuedRuns: Math.max(0, s.queuedRuns - 1), status: null },
      runs: [{ kind: 'end', id: queued.id, status: 'interrupted', reason: 'interrupted', error: null, endSeq: null, markInterrupted: true }],
      output: [],
      outbox: [runEndedEvent(queued.id, 'interrupted', 'interrupted', null)],
    },
    flagged: null,
    cancelled: queued.id,
  };
}

// ---------------------------------------------------------------------------------------
// Workers (issue 12): claims of agent runs, and owner-lost hand-backs

/** An agent run: executed by whichever instance serves its agent, so it is queued unowned. */
function isAgentRun(req: Pick<AdmissionRequest, 'agent'>): boolean {
  return req.agent !== undefined && req.agent !== null;
}

/** A queued run a worker claims (an agent run nobody owns), rather than one the queue's promotion starts. */
export function isClaimable(run: ActiveRun): boolean {
  return run.status === 'queued' && run.agent !== undefined && run.agent !== null && run.owner === null;
}

function runPolicy(req: AdmissionRequest): Pick<Extract<RunWrite, { kind: 'insert' }>, 'agent' | 'onOwnerLost' | 'maxRetries'> {
  if (!isAgentRun(req)) return { agent: null, onOwnerLost: 'fail', maxRetries: 0 };
  return { agent: req.agent, onOwnerLost: req.onOwnerLost ?? 'fail', maxRetries: req.maxRetries ?? 0 };
}

/** A run's reported usage as counter increments; nothing when it reported none. */
function usageCounters(usage: RunUsage | undefined): { counters?: UsageCounters } {
  if (!usage) return {};
  const n = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : 0);
  const counters = {
    inputTokens: Math.round(n(usage.input_tokens)),
    outputTokens: Math.round(n(usage.output_tokens)),
    totalCostUsd: n(usage.cost),
  };
  return counters.inputTokens + counters.outputTokens + counters.totalCostUsd > 0 ? { counters } : {};
}

export interface ClaimRequest {
  runId: string;
  /** The worker's instance. */
  owner: string;
  leaseMs: number;
}

export type Claim =
  /** The run starts on the worker: its `status` event, `run.started`, the session `active`. */
  | { decision: 'claim'; plan: WritePlan }
  /** The session ended: what was queued is ended (`session_ended`) instead, so it is never claimed again. */
  | { decision: 'end'; plan: WritePlan; cancelled: string[] }
  /** Not startable now (no longer queued or unowned, not the queue's head, the session busy): nothing written. */
  | { decision: 'skip' };

/**
 * Decides a worker's claim of a queued agent run on the locked rows: it starts when it is the
 * head of the queue, unowned, and nothing runs; on a session that ended, the queue is ended
 * instead. (`not_before` is checked by the claim's query, on the database's clock.)
 */
export function planClaim(state: RunLockState, req: ClaimRequest): Claim {
  const s = state.session;
  const head = state.queued[0];
  if (!head || head.id !== req.runId || !isClaimable(head) || state.running || s.runningRunId !== null) return { decision: 'skip' };
  if (isEnded(s)) {
    const runs: RunWrite[] = [];
    const outbox: PlannedEvent[] = [];
    for (const r of state.queued) {
      runs.push({ kind: 'end', id: r.id, status: 'interrupted', reason: 'session_ended', error: null, endSeq: null, markInterrupted: false });
      outbox.push(runEndedEvent(r.id, 'interrupted', 'session_ended', null));
    }
    return {
      decision: 'end',
      plan: { session: { outputSeq: s.outputSeq, runningRunId: null, queuedRuns: 0, status: null }, runs, output: [], outbox },
      cancelled: state.queued.map((r) => r.id),
    };
  }
  if (!canTransition(s.status, 'active')) return { decision: 'skip' };
  const seq = s.outputSeq + 1;
  const outbox: PlannedEvent[] = [];
  if (s.status !== 'active') outbox.push(statusChanged(s, 'active'));
  outbox.push(runStartedEvent(head.id, head.input ?? null, req.owner));
  return {
    decision: 'claim',
    plan: {
      session: { outputSeq: seq, runningRunId: head.id, queuedRuns: Math.max(0, s.queuedRuns - 1), status: 'active' },
      runs: [{ kind: 'promote', id: head.id, startSeq: seq, leaseMs: req.leaseMs, owner: req.owner }],
      output: [runningEvent(seq, head.id)],
      outbox,
    },
  };
}

/** Whether a lost run goes back to the queue: an agent run with policy `retry` and restarts left, on a live session. */
export function handsBack(run: ActiveRun, s: SessionRunState): boolean {
  return (
    run.status === 'running' &&
    run.agent !== undefined &&
    run.agent !== null &&
    run.onOwnerLost === 'retry' &&
    (run.attempts ?? 0) < (run.maxRetries ?? 0) &&
    !isEnded(s)
  );
}

/**
 * Plans what happens to a run whose owner is lost (the orphan sweep: `owner` null and the lease
 * lapsed) or gives it up (a draining owner: `owner` its own). A run that `handsBack` goes back
 * to the head of the queue (owner and lease cleared, attempts + 1) with a `restarted` output
 * event and `run.restarted`; the session leaves `active` and its workers are woken. Any other
 * run is finalized as `req` says (planFinalization).
 */
export function planOwnerLost(state: RunLockState, req: FinalizationRequest): Finalization | null {
  const s = state.session;
  const run = state.running?.id === req.runId ? state.running : null;
  if (!run || !handsBack(run, s)) return planFinalization(state, req);
  if (req.owner === null ? !run.leaseLapsed : run.owner !== req.owner) return null;
  const seq = s.outputSeq + 1;
  const attempt = (run.attempts ?? 0) + 1;
  const data = { run_id: run.id, attempt, reason: req.reason };
  const outbox: PlannedEvent[] = [];
  const status = s.status === 'active' ? req.sessionStatus : null;
  if (status !== null && status !== s.status) outbox.push(statusChanged(s, status));
  outbox.push({ type: 'run.restarted', payload: data });
  return {
    plan: {
      session: { outputSeq: seq, runningRunId: null, queuedRuns: s.queuedRuns + 1, status },
      runs: [{ kind: 'handback', id: run.id }],
      output: [{ seq, runId: run.id, type: 'restarted', data }],
      outbox,
      ...usageCounters(req.usage),
    },
    promoted: null,
    cancelled: [],
    claimable: [run.agent as string],
  };
}

// ---------------------------------------------------------------------------------------

const RUN_ENDED_EVENT: Record<EndedRunStatus, string> = {
  completed: 'run.completed',
  failed: 'run.failed',
  interrupted: 'run.interrupted',
};

function runEndedEvent(runId: string, status: EndedRunStatus, reason: string, error: string | null): PlannedEvent {
  return { type: RUN_ENDED_EVENT[status], payload: { run_id: runId, status, reason, error } };
}

function runStartedEvent(runId: string, input: unknown, owner: string | null): PlannedEvent {
  return { type: 'run.started', payload: { run_id: runId, input: input ?? null, owner } };
}

function statusChanged(s: SessionRunState, to: SessionStatus): PlannedEvent {
  return { type: 'session.status_changed', payload: { from: s.status, to, version: s.version + 1 } };
}

/** The first event of every run. */
function runningEvent(seq: number, runId: string): PlannedOutput {
  return { seq, runId, type: 'status', data: { state: 'running', run_id: runId } };
}
