/**
 * The run lifecycle's decisions (SPEC §7) as pure functions: which start is admitted and how,
 * what a finalization writes, what an interrupt changes. Plain data in (the session row and
 * its running and queued runs, as the caller locked them), a plan out; no I/O, no clock. The
 * repository reads the rows under lock, asks here, and carries the plan out in the same
 * transaction, so every check is made against the newest rows.
 */
import { AgentSessionsError, ConflictError, RunError } from './errors.js';
import { checkRunsQueued } from './limits.js';
import type { EndedRunStatus, FinalizeRequest, IfBusy, OnOwnerLost, RunDecision, RunUsage } from './runs.js';
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
  /** The run's input; read only for the first two queued runs, which a finalization may start. */
  input?: unknown;
  /** Whether its text output goes to the history when it ends (read for the running run). */
  persistOutput?: boolean;
  /** Whether its runner reads input while it runs (read for the running run: `steer`). */
  takesInput?: boolean;
  /** Whether it was asked to stop: `steer` then queues the input instead of handing it to a run that is ending. */
  interruptRequested?: boolean;
  /**
   * A debounced queued run: how long until its `not_before` (by the database's clock); 0 or
   * absent when it may start. A run still inside its window is not promoted, and `debounce`
   * gathers input into it.
   */
  startsInMs?: number;
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
  /** A new run row; its lease starts now; `inputs` is `[input]`; a `deferMs` queued run may not start before now + deferMs. */
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
      takesInput: boolean;
      deferMs: number | null;
      agent?: string | null;
      onOwnerLost?: OnOwnerLost;
      maxRetries?: number;
    }
  /** A queued run takes one more input (appended to its `inputs`); with `deferMs`, its `not_before` becomes now + deferMs. */
  | { kind: 'append'; id: string; input: unknown; deferMs: number | null }
  /** The running run gets input (a run_inputs row and `run.input`, as POST /input does). */
  | { kind: 'steer'; id: string; input: unknown }
  /**
   * A queued run starts: running, started now, a fresh lease; `owner` set: a worker claimed it
   * (and `takesInput` says whether that worker's runner reads input).
   */
  | { kind: 'promote'; id: string; startSeq: number; leaseMs: number; owner?: string; takesInput?: boolean }
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
  /** The debounce window (`ifBusy: 'debounce'`); the database adds it to its own clock. */
  debounceMs?: number;
  /** Whether the new run's runner reads input while it runs. Default false. */
  takesInput?: boolean;
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
  | {
      decision: RunDecision;
      /** The run the decision concerns: the new one, or the run the input went into. */
      runId: string;
      /** Whether `runId` is a new run row. */
      created: boolean;
      plan: WritePlan;
    }
  | { decision: 'refuse'; error: AgentSessionsError };

export function isBusy(s: SessionRunState): boolean {
  return s.runningRunId !== null || s.queuedRuns > 0;
}

/** Whether the session can take no more runs (or anything else): ended, or past a deadline. */
export function isEnded(s: SessionRunState): boolean {
  return !s.live || ENDED_STATUSES.includes(s.effectiveStatus);
}

/** Policies that look at the running and queued runs of a busy session. */
const READS_RUNS: readonly IfBusy[] = ['interrupt', 'steer', 'latest', 'merge', 'debounce'];

/**
 * Whether `admit` looks at the runs behind the session's bookkeeping: `reject` and `enqueue`
 * decide on the counts alone, so they need not read (and lock) the runs.
 */
export function admissionNeedsRuns(s: SessionRunState, ifBusy: IfBusy): boolean {
  return READS_RUNS.includes(ifBusy) && isBusy(s) && !isEnded(s);
}

/** Whether a queued run is still inside its debounce window. */
export function isDeferred(r: ActiveRun): boolean {
  return (r.startsInMs ?? 0) > 0;
}

/**
 * Decides a start (SPEC §7.1). An ended session refuses (`session_ended`). A session with no
 * run starts it (`started`; `debounce` queues it until the window closes: `debounced`). A busy
 * one follows `ifBusy`:
 * - `reject` refuses (`session_busy`);
 * - `enqueue` queues it (`queued`), up to `maxQueued` (`queue_full`);
 * - `interrupt` flags the running run, ends the queued ones and queues this one behind it
 *   (`interrupted`);
 * - `steer` hands the input to the running run (`steered`) if its runner takes input and it
 *   was not asked to stop, else queues it as a follow-up, as `merge` does;
 * - `latest` cancels every queued run and queues this one (`replaced`);
 * - `merge` appends the input to the last queued run (`merged`), or queues one (`queued`);
 * - `debounce` appends it to the last queued run while that run's window is open, moving the
 *   window, or queues one with a window of its own (`debounced`).
 * A new run that would wait behind nothing (no running run, and `interrupt` or `latest` ended
 * everything queued) starts at once instead: a queued run starts only when a run ends or its
 * window closes, so it would otherwise wait forever.
 */
export function admit(state: RunLockState, req: AdmissionRequest): Admission {
  const s = state.session;
  if (isEnded(s)) {
    return refuse(new ConflictError('session_ended', `session ${s.id} is ${s.effectiveStatus}`, { status: s.effectiveStatus }));
  }
  if (!canTransition(s.status, 'active')) {
    return refuse(
      new ConflictError('invalid_transition', `session ${s.id} cannot start a run from ${s.effectiveStatus}`, {
        status: s.effectiveStatus,
      }),
    );
  }
  const debounceMs = req.ifBusy === 'debounce' ? Math.max(1, req.debounceMs ?? 1) : null;
  if (!isBusy(s)) {
    if (debounceMs !== null) return newQueued(s, req, 'debounced', debounceMs, s.queuedRuns, [], []);
    return start(s, req, 'started', s.queuedRuns, [], []);
  }
  const tail = state.queued.at(-1) ?? null;
  switch (req.ifBusy) {
    case 'reject':
      return refuse(new RunError('session_busy', `session ${s.id} already has a run`, { runId: s.runningRunId ?? undefined }));
    case 'enqueue':
      return newQueued(s, req, 'queued', null, s.queuedRuns, [], []);
    case 'interrupt': {
      const flag: RunWrite[] = state.running ? [{ kind: 'flag', id: state.running.id }] : [];
      const ended = state.queued.map((r): RunWrite => ({
        kind: 'end',
        id: r.id,
        status: 'interrupted',
        reason: 'interrupted',
        error: null,
        endSeq: null,
        markInterrupted: true,
      }));
      const events = state.queued.map((r) => runEndedEvent(r.id, 'interrupted', 'interrupted', null));
      const left = s.queuedRuns - ended.length;
      if (!state.running && left === 0) return start(s, req, 'started', 0, ended, events);
      return newQueued(s, req, state.running ? 'interrupted' : 'queued', null, left, [...flag, ...ended], events, true);
    }
    case 'steer':
      if (state.running?.takesInput === true && state.running.interruptRequested !== true) {
        return { decision: 'steered', runId: state.running.id, created: false, plan: join([{ kind: 'steer', id: state.running.id, input: req.input }]) };
      }
      return followUp(s, req, tail);
    case 'latest': {
      const cancel = state.queued.map((r): RunWrite => ({
        kind: 'end',
        id: r.id,
        status: 'cancelled',
        reason: 'replaced',
        error: null,
        endSeq: null,
        markInterrupted: false,
      }));
      const events = state.queued.map((r) => runEndedEvent(r.id, 'cancelled', 'replaced', null));
      const left = s.queuedRuns - cancel.length;
      const decision = cancel.length > 0 ? 'replaced' : 'queued';
      if (!state.running && left === 0) return start(s, req, cancel.length > 0 ? 'replaced' : 'started', 0, cancel, events);
      return newQueued(s, req, decision, null, left, cancel, events, true);
    }
    case 'merge':
      return followUp(s, req, tail);
    case 'debounce':
      if (tail && isDeferred(tail)) {
        return { decision: 'debounced', runId: tail.id, created: false, plan: join([{ kind: 'append', id: tail.id, input: req.input, deferMs: debounceMs }]) };
      }
      return newQueued(s, req, 'debounced', debounceMs, s.queuedRuns, [], []);
  }
}

/** `merge`, and `steer` to a run that takes no input: into the last queued run, else a new one. */
function followUp(s: SessionRunState, req: AdmissionRequest, tail: ActiveRun | null): Admission {
  if (tail) return { decision: 'merged', runId: tail.id, created: false, plan: join([{ kind: 'append', id: tail.id, input: req.input, deferMs: null }]) };
  return newQueued(s, req, 'queued', null, s.queuedRuns, [], []);
}

/** Input that joins an existing run: the session's bookkeeping is unchanged. */
function join(runs: RunWrite[]): WritePlan {
  return { session: null, runs, output: [], outbox: [] };
}

function start(s: SessionRunState, req: AdmissionRequest, decision: RunDecision, queuedRuns: number, runs: RunWrite[], outbox: PlannedEvent[]): Admission {
  if (isAgentRun(req) && req.startHere === false) {
    // No free slot of its agent here: queued unowned, for whichever worker serves it to claim.
    return newQueued(s, req, decision === 'started' ? 'queued' : decision, null, queuedRuns, runs, outbox, true);
  }
  const seq = s.outputSeq + 1;
  const events = [...outbox];
  if (s.status !== 'active') events.push(statusChanged(s, 'active'));
  events.push(runStartedEvent(req.runId, req.input, req.owner));
  return {
    decision,
    runId: req.runId,
    created: true,
    plan: {
      session: { outputSeq: seq, runningRunId: req.runId, queuedRuns, status: 'active' },
      runs: [...runs, insert(req, 'running', seq, null)],
      output: [runningEvent(seq, req.runId)],
      outbox: events,
    },
  };
}

/**
 * A new queued run behind `queuedRuns` others (`uncapped`: the policy made room itself, so
 * `maxQueued` does not apply), after `runs`' writes and `outbox`'s events.
 */
function newQueued(
  s: SessionRunState,
  req: AdmissionRequest,
  decision: RunDecision,
  deferMs: number | null,
  queuedRuns: number,
  runs: RunWrite[],
  outbox: PlannedEvent[],
  uncapped = false,
): Admission {
  if (!uncapped) {
    const full = queueFull(queuedRuns, req.maxQueued);
    if (full) return refuse(full);
  }
  return {
    decision,
    runId: req.runId,
    created: true,
    plan: {
      session: { outputSeq: s.outputSeq, runningRunId: s.runningRunId, queuedRuns: queuedRuns + 1, status: null },
      runs: [...runs, insert(req, 'queued', null, deferMs)],
      output: [],
      outbox: [...outbox, runQueuedEvent(req.runId, req.input, isAgentRun(req) ? null : req.owner, deferMs)],
    },
  };
}

function insert(req: AdmissionRequest, status: 'running' | 'queued', startSeq: number | null, deferMs: number | null): RunWrite {
  const unowned = status === 'queued' && isAgentRun(req);
  return {
    kind: 'insert',
    id: req.runId,
    status,
    // A queued agent run waits for a worker to claim it: no owner, no lease.
    owner: unowned ? null : req.owner,
    input: req.input,
    startSeq,
    leaseMs: unowned ? null : req.leaseMs,
    persistOutput: req.persistOutput ?? false,
    takesInput: req.takesInput ?? false,
    deferMs,
    ...runPolicy(req),
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
 * (`session_ended`). A head still inside its debounce window is left queued (its owner's timer
 * starts it: planDuePromotion). The session leaves `active` only when nothing else runs and it
 * is live.
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
  } else if ((wasRunning || s.runningRunId === null) && s.live && waiting.length > 0 && isClaimable(waiting[0] as ActiveRun)) {
    // An agent run is claimed by a worker serving its agent, wherever it is (not before its window closes).
    claimable.push((waiting[0] as ActiveRun).agent as string);
  } else if ((wasRunning || s.runningRunId === null) && s.live && waiting.length > 0 && !isDeferred(waiting[0] as ActiveRun)) {
    // The next run starts when the running run ends, or when a queued run ahead of it ended with
    // nothing running (a debounced head whose owner was lost). A head still inside its debounce
    // window stays queued: its owner starts it when the window closes.
    promoted = waiting[0] as ActiveRun;
    const startSeq = ++seq;
    runs.push({ kind: 'promote', id: promoted.id, startSeq, leaseMs: req.leaseMs });
    output.push(runningEvent(startSeq, promoted.id));
    outbox.push(runStartedEvent(promoted.id, promoted.input ?? null, promoted.owner));
    queuedRuns -= 1;
  }
  const runningRunId = wasRunning || promoted ? (promoted?.id ?? null) : s.runningRunId;
  // A run that follows the running one keeps the session `active` as it was; one that starts on an idle session makes it so.
  const status = promoted ? (wasRunning ? null : 'active') : wasRunning && s.status === 'active' && s.live ? req.sessionStatus : null;
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
// A debounced run whose window closed

export type DuePromotionPlan =
  /** The run starts now. */
  | { kind: 'promote'; plan: WritePlan }
  /** Still inside its window: ask again in `waitMs`. */
  | { kind: 'wait'; waitMs: number }
  /** The session ended while it waited: it ends without running. */
  | { kind: 'end'; plan: WritePlan }
  /** Nothing to do: it is not queued any more, or another run is ahead of it or running (whose end promotes it). */
  | { kind: 'none' };

/**
 * Starts the queued run `runId` when its window has closed, it heads the queue and nothing
 * runs: what finalization's promotion would have done had a run ended then.
 */
export function planDuePromotion(state: RunLockState, runId: string, leaseMs: number): DuePromotionPlan {
  const s = state.session;
  const head = state.queued[0];
  if (!head || head.id !== runId || state.running || s.runningRunId !== null) return { kind: 'none' };
  if (isEnded(s)) {
    return {
      kind: 'end',
      plan: {
        session: { outputSeq: s.outputSeq, runningRunId: null, queuedRuns: Math.max(0, s.queuedRuns - 1), status: null },
        runs: [{ kind: 'end', id: head.id, status: 'interrupted', reason: 'session_ended', error: null, endSeq: null, markInterrupted: false }],
        output: [],
        outbox: [runEndedEvent(head.id, 'interrupted', 'session_ended', null)],
      },
    };
  }
  if (isDeferred(head)) return { kind: 'wait', waitMs: head.startsInMs ?? 0 };
  if (!canTransition(s.status, 'active')) return { kind: 'none' };
  return { kind: 'promote', plan: startQueued(s, head, { leaseMs }, head.owner, Math.max(0, s.queuedRuns - 1)) };
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
  /** The queued run that starts because the cancelled one headed the queue and nothing ran. */
  promoted?: string | null;
}

/**
 * An interrupt decided on the locked rows: the running run (or the one `runId` names, if it
 * runs) is flagged; a queued run `runId` names is cancelled outright, so it never starts.
 */
export function planInterrupt(state: RunLockState, runId: string | undefined, leaseMs?: number): InterruptPlan {
  const running = state.running;
  if (running && (runId === undefined || runId === running.id)) {
    return { plan: { session: null, runs: [{ kind: 'flag', id: running.id }], output: [], outbox: [] }, flagged: running.id, cancelled: null };
  }
  const queued = runId === undefined ? undefined : state.queued.find((r) => r.id === runId);
  if (!queued) return { plan: null, flagged: null, cancelled: null };
  const s = state.session;
  const end: RunWrite = { kind: 'end', id: queued.id, status: 'interrupted', reason: 'interrupted', error: null, endSeq: null, markInterrupted: true };
  const next = state.queued.find((r) => r.id !== queued.id);
  if (
    leaseMs !== undefined &&
    !running &&
    s.runningRunId === null &&
    state.queued[0]?.id === queued.id &&
    next &&
    !isDeferred(next) &&
    !isClaimable(next) &&
    !isEnded(s)
  ) {
    // The head of a queue nothing runs ahead of (a debounced run) is cancelled: the next one starts, or nothing would start it.
    return {
      plan: startQueued(s, next, { leaseMs }, next.owner, Math.max(0, s.queuedRuns - 2), {
        runs: [end],
        outbox: [runEndedEvent(queued.id, 'interrupted', 'interrupted', null)],
      }),
      flagged: null,
      cancelled: queued.id,
      promoted: next.id,
    };
  }
  return {
    plan: {
      session: { outputSeq: s.outputSeq, runningRunId: s.runningRunId, queuedRuns: Math.max(0, s.queuedRuns - 1), status: null },
      runs: [end],
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
  /** Whether the worker's runner reads input while it runs (`steer` delivers into it). */
  takesInput?: boolean;
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
  const promote = { leaseMs: req.leaseMs, owner: req.owner, takesInput: req.takesInput ?? false };
  return { decision: 'claim', plan: startQueued(s, head, promote, req.owner, Math.max(0, s.queuedRuns - 1)) };
}

/** Whether a lost run goes back to the queue: an agent run with policy `retry` and restarts left, on a live session. */
export function handsBack(run: ActiveRun, s: SessionRunState): boolean {
  return (
    run.status === 'running' &&
    run.agent !== undefined &&
    run.agent !== null &&
    run.onOwnerLost === 'retry' &&
    // A run someone asked to stop is not restarted elsewhere: the interrupt stands.
    run.interruptRequested !== true &&
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

/**
 * A queued run that starts on a session where nothing runs (a debounce window closed, a
 * cancelled head's successor, a worker's claim): its `status` event, `run.started` naming
 * `owner`, the session `active` with `queuedRuns` left, after `before`'s writes and events.
 */
function startQueued(
  s: SessionRunState,
  head: ActiveRun,
  promote: Omit<Extract<RunWrite, { kind: 'promote' }>, 'kind' | 'id' | 'startSeq'>,
  owner: string | null,
  queuedRuns: number,
  before: { runs?: RunWrite[]; outbox?: PlannedEvent[] } = {},
): WritePlan {
  const seq = s.outputSeq + 1;
  const outbox = [...(before.outbox ?? [])];
  if (s.status !== 'active') outbox.push(statusChanged(s, 'active'));
  outbox.push(runStartedEvent(head.id, head.input ?? null, owner));
  return {
    session: { outputSeq: seq, runningRunId: head.id, queuedRuns, status: 'active' },
    runs: [...(before.runs ?? []), { kind: 'promote', id: head.id, startSeq: seq, ...promote }],
    output: [runningEvent(seq, head.id)],
    outbox,
  };
}

const RUN_ENDED_EVENT: Record<EndedRunStatus, string> = {
  completed: 'run.completed',
  failed: 'run.failed',
  interrupted: 'run.interrupted',
  cancelled: 'run.cancelled',
};

function runEndedEvent(runId: string, status: EndedRunStatus, reason: string, error: string | null): PlannedEvent {
  return { type: RUN_ENDED_EVENT[status], payload: { run_id: runId, status, reason, error } };
}

function runQueuedEvent(runId: string, input: unknown, owner: string | null, deferMs: number | null): PlannedEvent {
  return { type: 'run.queued', payload: { run_id: runId, input: input ?? null, owner, ...(deferMs === null ? {} : { debounce_ms: deferMs }) } };
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
