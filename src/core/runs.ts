/**
 * Runs: the model (SPEC §7) and the ports RunService, RunExecutor and LeaseKeeper depend on.
 * No I/O here.
 */
import type { Lifecycle } from './ports.js';
import type { CallOptions, Page, Session } from './types.js';

/** `cancelled`: a queued run a policy dropped (`latest`); it never ran. */
export const RUN_STATUSES = ['queued', 'running', 'completed', 'failed', 'interrupted', 'cancelled'] as const;
export type RunStatus = (typeof RUN_STATUSES)[number];
export type EndedRunStatus = 'completed' | 'failed' | 'interrupted' | 'cancelled';

/**
 * What `start` does when the session already has a run (SPEC §7.1): refuse, wait behind it,
 * stop it first, deliver the input into it, replace what was queued, add the input to the
 * queued run, or gather inputs for `debounceMs` into one run.
 */
export const IF_BUSY = ['reject', 'enqueue', 'interrupt', 'steer', 'latest', 'merge', 'debounce'] as const;
export type IfBusy = (typeof IF_BUSY)[number];

/**
 * What an admission did: `started` (the run runs now), `queued` (a new queued run),
 * `steered` (the input went into the running run), `merged` (appended to the queued run),
 * `replaced` (the queued runs were cancelled, this one queued), `debounced` (gathered into a
 * run that starts when no input came for `debounceMs`), `interrupted` (the running run was
 * asked to stop and this one follows).
 */
export const RUN_DECISIONS = ['started', 'queued', 'steered', 'merged', 'replaced', 'debounced', 'interrupted'] as const;
export type RunDecision = (typeof RUN_DECISIONS)[number];

/** The longest debounce window, in ms. */
export const MAX_DEBOUNCE_MS = 60_000;
/** What happens to a run whose owner is lost (SPEC §7.1): end it `owner_lost`, or hand it back to the queue. */
export const ON_OWNER_LOST = ['fail', 'retry'] as const;
export type OnOwnerLost = (typeof ON_OWNER_LOST)[number];

/** Usage a runner reports (RunContext.reportUsage, RunResult.usage); the finalization adds it to the session's counters. */
export interface RunUsage {
  /** Added to the session's inputTokens. */
  input_tokens?: number;
  /** Added to the session's outputTokens. */
  output_tokens?: number;
  /** Added to the session's totalCostUsd. */
  cost?: number;
}

export interface Run {
  id: string;
  sessionId: string;
  tenantId: string;
  status: RunStatus;
  /** Instance id of the process that executes (or will execute) the run. */
  owner: string | null;
  /** The first of `inputs` (the shape before inputs could be merged). */
  input: unknown;
  /** Every input the run starts with, in arrival order: one unless merged or debounced. */
  inputs: unknown[];
  /** A debounced queued run does not start before this. */
  notBefore: string | null;
  /** Whether the runner reads input while it runs (else `steer` queues input as a follow-up). */
  takesInput: boolean;
  error: string | null;
  /** Why it ended: completed, interrupted, runner_error, owner_lost, owner_shutdown, session_ended, ... */
  endReason: string | null;
  interruptRequestedAt: string | null;
  leaseExpiresAt: string | null;
  createdAt: string;
  startedAt: string | null;
  endedAt: string | null;
  /** Seq of the run's first output event; a reader from `startSeq - 1` sees the whole run. */
  startSeq: number | null;
  endSeq: number | null;
  /** Whether the run's text output becomes an assistant item of the history when it ends (completed or interrupted). */
  persistOutput: boolean;
  /** The agent that executes it (any instance serving it claims it); null: a closure run pinned to its instance. */
  agent: string | null;
  onOwnerLost: OnOwnerLost;
  maxRetries: number;
  /** How many times it was handed back after its owner was lost. */
  attempts: number;
}

/** One output event. `seq` increases by one per event within a session, across runs. */
export interface OutputEvent {
  seq: number;
  runId: string;
  type: string;
  data: unknown;
  createdAt: string;
}

export interface NewOutputEvent {
  type: string;
  data?: unknown;
}

/** An event on its way to the archive; `json`: its data's JSON text, when the caller has it (the writer does, from the size check). */
export interface ArchivedOutputEvent extends NewOutputEvent {
  json?: string;
}

/**
 * The JSON text of stored events' data, kept beside the events (not on them) by the step that
 * already has it: the writer (from the size check), the Redis reader (from the stream entry).
 * The next steps (the archive statement, the live log, the SSE frame) then splice it in
 * instead of serializing the value again.
 */
const dataJsonOf = new WeakMap<OutputEvent, string>();

/** Notes `json` as the JSON text of `event.data`; returns the event. */
export function noteDataJson(event: OutputEvent, json: string): OutputEvent {
  dataJsonOf.set(event, json);
  return event;
}

/** The JSON text of an event's data: as noted, or serialized now. */
export function outputDataJson(event: OutputEvent): string {
  return dataJsonOf.get(event) ?? JSON.stringify(event.data ?? null);
}

/**
 * The terminal event types, written only by finalization: `done` (completed or interrupted)
 * and `error` (failed). A reader stops after one; runners cannot emit them.
 */
export const TERMINAL_EVENT_TYPES: readonly string[] = ['done', 'error'];

/**
 * The types only the service writes: the terminal ones, and `restarted` (a run handed back
 * after its owner was lost starts again: `{ run_id, attempt, reason }`). Runners cannot emit them.
 */
export const SERVICE_EVENT_TYPES: readonly string[] = [...TERMINAL_EVENT_TYPES, 'restarted'];

/** What RunRepository.appendOutput did with one batch. */
export type AppendOutcome = OutputEvent[] | null | 'busy';

/** Events of one run to archive (RunRepository.appendOutput). */
export interface OutputBatch {
  tenant: string;
  sessionId: string;
  runId: string;
  /** The instance whose writer sent it: stored only while the run's row names it as owner. */
  owner: string;
  /**
   * Events of this run its writer archived before this batch: the batch's first event takes
   * the seq `startSeq + offset + 1` (a run's writer is the only writer of its session's
   * output while it runs, one batch at a time).
   */
  offset: number;
  events: readonly ArchivedOutputEvent[];
}

/**
 * The output event types SPEC §7 names: conventional ones runners emit (`text`, `tool_call`,
 * `tool_result`, `status`), the ones the service writes (`restarted`, and the terminal `error`
 * and `done`), and `gap`, which no run writes: a reader whose cursor is older than what is
 * retained gets it first (`GapData`). Runners may emit other types too.
 */
export const OUTPUT_EVENT_TYPES = ['text', 'tool_call', 'tool_result', 'status', 'restarted', 'error', 'done', 'gap'] as const;

/** A reader's notice that events it asked for are no longer retained. */
export const GAP_EVENT_TYPE = 'gap';

/**
 * The data of a `gap` event: the events `from`..`to` (seqs of the output, ids of the event
 * feed) were pruned (`reason: 'retention'`); the stream continues after `to`, and the gap
 * event's own seq or id is `to`, so a reader that resumes from it skips nothing retained.
 */
export interface GapData {
  from: number;
  to: number;
  reason: 'retention';
}

export function isTerminalEvent(e: Pick<OutputEvent, 'type'>): boolean {
  return TERMINAL_EVENT_TYPES.includes(e.type);
}

/** What a runner sees: the library API of one run. */
export interface RunContext {
  readonly id: string;
  readonly sessionId: string;
  readonly tenant: string;
  /** The session as it was when the run started. */
  readonly session: Session;
  /** The first of `initialInputs`. */
  readonly input: unknown;
  /** Every input the run starts with, in arrival order (one unless merged or debounced). */
  readonly initialInputs: readonly unknown[];
  /** Fires when any instance interrupts the run (reason: an `AgentSessionsError` with code `interrupted`), or when this instance loses or gives up the run. */
  readonly signal: AbortSignal;
  /**
   * Appends an output event; resolves to its seq once it is committed to PostgreSQL.
   * Throws at once for a bad event. Awaiting is optional: events keep their order either way.
   */
  emit(event: NewOutputEvent): Promise<number>;
  /** Input forwarded from any instance, in order. Ends when the run ends or is aborted. */
  readonly inputs: AsyncIterable<unknown>;
  /** Adds usage (tokens, cost); the run's finalization adds the sum to the session's counters. */
  reportUsage(usage: RunUsage): void;
}

/** What a runner may return. */
export interface RunResult {
  /** The session's status after the run (default idle). */
  sessionStatus?: 'idle' | 'waiting_input';
  /** Usage of the run, added to what it reported with `reportUsage`. */
  usage?: RunUsage;
}

/**
 * A runner; one that reads `run.inputs` while it runs may say so with `takesInput: true` (the
 * built-in command and demo runners do), so `ifBusy: 'steer'` delivers into it by default.
 */
export type Runner = ((run: RunContext) => Promise<RunResult | void> | RunResult | void) & { readonly takesInput?: boolean };

export interface StartRunOptions extends CallOptions {
  ifBusy?: IfBusy;
  input?: unknown;
  /**
   * Append the run's text output (its `text` events, in order) to the history as one
   * assistant message when it completes or is interrupted, in the finalizing transaction.
   * Default false.
   */
  persistOutput?: boolean;
  /** With `ifBusy: 'debounce'`: the quiet time (1..60000 ms) after the last input before the run starts. */
  debounceMs?: number;
  /** Whether the runner reads `run.inputs` while it runs (default: the runner's own `takesInput`, else false; `steer` then queues a follow-up). */
  takesInput?: boolean;
  /** The agent to run (default: the configured AGENT_NAME); only without a runner function. */
  agent?: string;
  /** When its owner is lost: `fail` (default) or `retry` (only an agent run). */
  onOwnerLost?: OnOwnerLost;
  /** With `retry`: at most this many restarts (default 0). */
  maxRetries?: number;
}

export interface ServeOptions {
  /** Runs of this agent executing here at once (default 1). */
  concurrency?: number;
  /** Whether the runner reads `run.inputs` (steered input reaches it). Default false. */
  takesInput?: boolean;
}

/** What `runs.serve` returns: `stop()` stops claiming and resolves once this agent's runs here have ended. */
export interface ServeHandle {
  readonly agent: string;
  stop(): Promise<void>;
}

/** A started (or queued, or joined) run, with what the admission decided. */
export type AdmittedRun = Run & { decision: RunDecision };

export interface StreamOptions extends CallOptions {
  /**
   * Resume after this seq. Without it the stream starts at the beginning of the session's
   * current (or latest) run.
   */
  after?: number;
}

export interface InterruptOptions extends CallOptions {
  /** A specific run (running or queued); default: the running run. */
  runId?: string;
  /**
   * Wait up to this many ms (0..60,000) for the run to end, wherever it runs, and resolve to it
   * as it is then: ended (any status but `running`/`queued`), or still going when the time ran
   * out. Default: no wait (the run as flagged).
   */
  waitMs?: number;
}

/** The longest `waitMs` of an interrupt (HTTP `wait_ms`). */
export const MAX_INTERRUPT_WAIT_MS = 60_000;

/** Whether a run has reached a terminal state (it no longer runs or waits to). */
export function isRunEnded(run: Pick<Run, 'status'>): boolean {
  return run.status !== 'running' && run.status !== 'queued';
}

export interface InputOptions extends CallOptions {
  /** Deliver only if this is the running run. */
  runId?: string;
}

/** The runs API of the library (`sessions.runs`), callable from any instance. */
export interface Runs {
  /**
   * Starts a run of `runner` (default: the configured agent) on this instance. Resolves once
   * the run is recorded (running, or queued per `ifBusy`); the runner goes on in the background.
   */
  start(sessionId: string, runner?: Runner, opts?: StartRunOptions): Promise<AdmittedRun>;
  /** Starts a run of an agent (`opts.agent`, default the configured one): whichever instance serves it executes it. */
  start(sessionId: string, opts: StartRunOptions): Promise<AdmittedRun>;
  /**
   * Executes queued runs of `agent` on this instance, at most `concurrency` at once: they are
   * claimed from PostgreSQL (SKIP LOCKED) as they become startable.
   */
  serve(agent: string, runner: Runner, opts?: ServeOptions): ServeHandle;
  get(sessionId: string, runId: string, opts?: CallOptions): Promise<Run>;
  /** Runs of a session, newest first. */
  list(sessionId: string, query?: { cursor?: string; limit?: number }, opts?: CallOptions): Promise<Page<Run>>;
  /**
   * Interrupts the running run (or cancels the queued run `runId` names), wherever it runs; with
   * `waitMs`, resolves once it ended or that time passed (see `isRunEnded`).
   */
  interrupt(sessionId: string, opts?: InterruptOptions): Promise<Run>;
  /** Forwards input to the session's running run, wherever it runs. */
  sendInput(sessionId: string, input: unknown, opts?: InputOptions): Promise<{ runId: string; seq: number }>;
  /** The session's output from `after`, ending after the next terminal event; leaving the loop releases everything. */
  stream(sessionId: string, opts?: StreamOptions): AsyncIterable<OutputEvent>;
  /** Resolves to the run once it has ended. */
  wait(sessionId: string, runId: string, opts?: CallOptions): Promise<Run>;
}

// ---------------------------------------------------------------------------------------
// Ports

export interface StartRunRequest {
  tenant: string;
  sessionId: string;
  runId: string;
  owner: string;
  input: unknown;
  leaseMs: number;
  ifBusy: IfBusy;
  maxQueued: number;
  /** Default false. */
  persistOutput?: boolean;
  /** With `ifBusy: 'debounce'`. */
  debounceMs?: number;
  /** Default false. */
  takesInput?: boolean;
  /** The agent (null: a closure run, pinned to `owner`). */
  agent?: string | null;
  onOwnerLost?: OnOwnerLost;
  maxRetries?: number;
  /** An agent run `owner` will execute if it starts now; false: it is queued for a worker to claim. */
  startHere?: boolean;
}

export interface StartRunResult {
  /** The run the decision concerns: the one inserted, or the running or queued run the input went into. */
  run: Run;
  decision: RunDecision;
  /** Whether `run` is a new row (else the input joined an existing run). */
  created: boolean;
  /** With `steered`: the input's seq among the running run's inputs. */
  inputSeq: number | null;
  /** The session after the write, when its status or version changed. */
  session: Session | null;
  /** Output events the start wrote (the `status: running` event). */
  events: OutputEvent[];
  /** Running runs flagged for interruption by `ifBusy: 'interrupt'`. */
  interrupted: Run[];
  /** Queued runs ended by `ifBusy: 'interrupt'` or cancelled by `ifBusy: 'latest'`. */
  cancelled: Run[];
  /** A queued run that was promoted to running by this write (when the session fell idle meanwhile). */
  promoted: Run | null;
}

export interface FinalizeRequest {
  tenant: string;
  sessionId: string;
  runId: string;
  /** Finalize only if this instance owns the run; null = the orphan sweep (lease must have lapsed). */
  owner: string | null;
  status: EndedRunStatus;
  reason: string;
  error: string | null;
  /** Extra fields of the terminal event's data. */
  details?: Record<string, unknown>;
  /** The session's status after the run, when nothing else runs and the session is live. */
  sessionStatus: 'idle' | 'waiting_input';
  /** The lease of a queued run this finalization starts. */
  leaseMs: number;
  /** Usage the run reported: added to the session's counters in the same transaction. */
  usage?: RunUsage;
  /**
   * The owner is lost (orphan sweep) or gave the run up (drain): a run whose policy is
   * `retry` with restarts left is handed back to the queue instead of ending.
   */
  ownerLost?: boolean;
}

export interface FinalizeResult {
  run: Run;
  session: Session | null;
  /** The terminal event and, when a queued run was promoted, its `status: running` event. */
  events: OutputEvent[];
  promoted: Run | null;
  /** Queued runs ended without running because the session ended. */
  cancelled: Run[];
  /** Agents whose workers should look for a run to claim (a queue head left for them, a run handed back). */
  claimable?: string[];
}

/** A run a worker claimed, with the session as the claim left it. */
export interface ClaimedRun {
  run: Run;
  session: Session | null;
  events: OutputEvent[];
}

export interface ClaimResult {
  claimed: ClaimedRun[];
  /** Runs ended instead of claimed (their session ended): announce them like a finalization. */
  ended: FinalizeResult[];
}

/** What `promoteDue` did: started the run (`run`), or found it still inside its window (`waitMs`), or neither. */
export interface DuePromotion {
  run: Run | null;
  session: Session | null;
  /** The `status: running` event of the run it started. */
  events: OutputEvent[];
  waitMs: number | null;
}

export interface HeartbeatRow {
  id: string;
  status: RunStatus;
  owner: string | null;
  interruptRequested: boolean;
  /** When the interrupt was requested (ms since the epoch, by the database's clock); null if none was. */
  interruptRequestedAt: number | null;
  inputSeq: number;
  sessionEnded: boolean;
}

export interface RunInput {
  seq: number;
  data: unknown;
}

/** The source of truth for runs and their output. Every method commits before it resolves. */
export interface RunRepository {
  /** Inserts the run as running (session → active, `run.started`) or queued, per `ifBusy`. */
  start(req: StartRunRequest): Promise<StartRunResult>;
  get(tenant: string, sessionId: string, runId: string): Promise<Run | null>;
  /** Newest first; null when the session does not exist for the tenant. */
  list(tenant: string, sessionId: string, query: { cursor?: string; limit: number }): Promise<Page<Run> | null>;
  /** The latest run that started (or null) and the session's last output seq; null when no such session. */
  streamStart(tenant: string, sessionId: string): Promise<{ run: Run | null; outputSeq: number } | null>;
  /**
   * Flags the running run (or cancels a queued one when `runId` names it). Resolves to the
   * runs it changed; null when the session does not exist.
   */
  requestInterrupt(tenant: string, sessionId: string, runId: string | undefined, leaseMs?: number): Promise<Run[] | null>;
  /** Stores input for the running run; null when the session does not exist, run null when none runs. */
  addInput(tenant: string, sessionId: string, runId: string | undefined, data: unknown): Promise<{ run: Run | null; seq: number } | null>;
  readInputs(runId: string, afterSeq: number): Promise<RunInput[]>;
  /** Renews the leases of this owner's runs and reports what changed for each. */
  heartbeat(owner: string, runIds: readonly string[], leaseMs: number): Promise<HeartbeatRow[]>;
  /**
   * Allocates seqs and archives each batch while its run is its session's running run, all in
   * one commit (at most one batch per session). One answer per batch, in order: its stored
   * events, null when its run is not running there, or (with `wait: false`) 'busy' when
   * another transaction held its session and nothing of it was done.
   */
  appendOutput(batches: readonly OutputBatch[], options?: { wait?: boolean }): Promise<AppendOutcome[]>;
  /** Archived events after `afterSeq`, in order; null when the session no longer exists. */
  readOutput(tenant: string, sessionId: string, afterSeq: number, limit: number): Promise<OutputEvent[] | null>;
  /** Ends the run in one transaction; null when it was no longer this owner's (or not orphaned). */
  finalize(req: FinalizeRequest): Promise<FinalizeResult | null>;
  /** Runs whose lease lapsed (candidates for the orphan sweep). */
  orphans(limit: number): Promise<Array<{ id: string; tenant: string; sessionId: string; status: RunStatus }>>;
  /**
   * Starts a debounced queued run whose `not_before` has passed, when it heads its session's
   * queue and nothing runs (its owner's timer). `waitMs`: still inside its window, ask again
   * then (by the database's clock); null and no run: nothing to do (it ended, was promoted,
   * or waits behind another run, whose end promotes it).
   */
  promoteDue(tenant: string, sessionId: string, runId: string, leaseMs: number): Promise<DuePromotion>;
  /**
   * Claims up to `limit` startable queued runs of `agent` for `owner` (SKIP LOCKED: two
   * claimers never take the same run): each starts running there with a fresh lease.
   */
  claim(owner: string, agent: string, limit: number, leaseMs: number, takesInput?: boolean): Promise<ClaimResult>;
}

export type RunSignal =
  | { type: 'interrupt'; sessionId: string; runId: string; requestedAt: number }
  | { type: 'input'; sessionId: string; runId: string; seq: number }
  | { type: 'promoted'; sessionId: string; runId: string }
  /** To the workers of an agent (`workersAddress(agent)`): a run may be claimable. */
  | { type: 'claimable'; sessionId: string; runId: string; agent: string };

/** Where the SignalBus reaches every instance serving `agent`. */
export function workersAddress(agent: string): string {
  return `workers:${agent}`;
}

/**
 * The fast path of cross-instance signals, addressed to the instance that owns a run.
 * Delivery is best effort: every signal also has a durable path checked at each heartbeat.
 */
export interface SignalBus extends Lifecycle {
  readonly name: string;
  publish(owner: string, signal: RunSignal): Promise<void>;
  subscribe(owner: string, handler: (signal: RunSignal) => void): Promise<() => Promise<void>>;
}

/**
 * Live fan-out of output events. Everything published here is already archived, so a
 * lost or trimmed event costs a reader an archive read, never the event. A session is named
 * by its key (`sessionKey(tenant, id)`, core/ids.ts).
 */
export interface OutputLog extends Lifecycle {
  readonly name: string;
  publish(key: string, events: readonly OutputEvent[]): Promise<void>;
  /**
   * Waits up to `timeoutMs` for events after `after` and resolves to those it holds; an
   * empty result means "nothing here, consult the archive".
   */
  read(key: string, after: number, opts: { timeoutMs: number; signal?: AbortSignal }): Promise<OutputEvent[]>;
  /** Drops what it holds of these sessions (erasure); a log that keeps no events has nothing to drop. */
  discard?(keys: readonly string[]): Promise<void>;
}
