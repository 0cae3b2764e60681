/**
 * The runs API of the library (`sessions.runs`, SPEC §7): start a run here, and from any
 * instance read its output, interrupt it, send it input and wait for its end. Starting hands
 * the run to this instance's RunExecutor; everything else goes through the repository and,
 * for interrupts and input, a signal to the run's owner wherever it is.
 */
import { sleep, throwIfAborted } from './abort.js';
import { afterCommit, onRollback } from './commit-effects.js';
import { AgentSessionsError, NotFoundError, RunError, UnavailableError, ValidationError } from './errors.js';
import { isSessionId, isUuid, sessionKey, uuidv7 } from './ids.js';
import { jsonBytes } from './limits.js';
import { checkJsonValue, DEFAULT_JSON_SHAPE, type JsonShapeLimits } from './json-shape.js';
import { readOutput } from './output-stream.js';
import { preciseNow, type RunExecutor } from './run-executor.js';
import { isAgentName, type RunWorkers, type WorkerSlot } from './run-workers.js';
import {
  IF_BUSY,
  isRunEnded,
  isTerminalEvent,
  MAX_INTERRUPT_WAIT_MS,
  MAX_DEBOUNCE_MS,
  ON_OWNER_LOST,
  type AdmittedRun,
  type ServeHandle,
  type ServeOptions,
  type InputOptions,
  type InterruptOptions,
  type OutputEvent,
  type OutputLog,
  type Run,
  type RunRepository,
  type Runner,
  type Runs,
  type StartRunOptions,
  type StreamOptions,
} from './runs.js';
import { NO_RUN_TELEMETRY, type RunTelemetry } from './telemetry.js';
import { NO_TRACING, traceMethods, type TracedMethod, type Tracing } from './tracing.js';
import { DEFAULT_TENANT, type CallOptions, type Page, type Session } from './types.js';

export interface RunServiceOptions {
  repository: RunRepository;
  executor: RunExecutor;
  live: OutputLog;
  leaseMs: number;
  maxQueued: number;
  maxInputBytes: number;
  /** Bounds on the input's nesting and node count (default 256 levels, 100,000 nodes). */
  jsonShape?: JsonShapeLimits;
  /** How long a stream reader waits on the live log before it checks the archive (default 1000). */
  readPollMs?: number;
  /** Called with every session row a run write changed, so caches stay right. */
  onSessionWritten: (session: Session) => Promise<void>;
  /** The workers of this instance: agent runs start here when it serves the agent, else wait for a worker. */
  workers: RunWorkers;
  /** The agent a run without a runner or an `agent` runs (AGENT_NAME). */
  defaultAgent: string;
  /** Where interrupt requests are reported (metrics). */
  telemetry?: RunTelemetry;
  /** Where the operations are traced (a span each); default: not at all. */
  tracing?: Tracing;
}

/**
 * The operations traced, one span each (`run.<operation>`). Streams and `wait` are not: they
 * last as long as a run, and the reads they make are traced under the caller's span.
 */
const RUN_OPERATIONS: Readonly<Record<string, TracedMethod>> = {
  start: { span: 'run.start', result: 'run' },
  get: { span: 'run.get' },
  list: { span: 'run.list' },
  interrupt: { span: 'run.interrupt', result: 'run' },
  sendInput: { span: 'run.input' },
};

export class RunService implements Runs {
  private readonly repo: RunRepository;
  private readonly executor: RunExecutor;
  private readonly options: RunServiceOptions;
  private readonly workers: RunWorkers;
  private readonly readPollMs: number;
  private readonly telemetry: RunTelemetry;
  private readonly jsonShape: JsonShapeLimits;

  constructor(options: RunServiceOptions) {
    this.options = options;
    this.repo = options.repository;
    this.executor = options.executor;
    this.workers = options.workers;
    this.readPollMs = options.readPollMs ?? 1_000;
    this.telemetry = options.telemetry ?? NO_RUN_TELEMETRY;
    this.jsonShape = options.jsonShape ?? DEFAULT_JSON_SHAPE;
    traceMethods(this, options.tracing ?? NO_TRACING, RUN_OPERATIONS);
  }

  /**
   * Starts a run of `runner` on this instance, or (without a runner) of an agent wherever it is
   * served, or follows `ifBusy` when the session has a run (SPEC §7.1). Resolves once the
   * decision is recorded, to the run it concerns (the new one, or the run the input went into)
   * with `decision`; the runner goes on in the background.
   */
  start(sessionId: string, runner?: Runner, opts?: StartRunOptions): Promise<AdmittedRun>;
  start(sessionId: string, opts: StartRunOptions): Promise<AdmittedRun>;
  async start(sessionId: string, runnerOrOpts?: Runner | StartRunOptions, maybeOpts: StartRunOptions = {}): Promise<AdmittedRun> {
    const runner = typeof runnerOrOpts === 'function' ? runnerOrOpts : undefined;
    const opts: StartRunOptions = typeof runnerOrOpts === 'object' && runnerOrOpts !== null ? runnerOrOpts : (maybeOpts ?? {});
    throwIfAborted(opts.signal);
    checkId(sessionId, 'session id');
    if (runnerOrOpts !== undefined && runnerOrOpts !== null && typeof runnerOrOpts !== 'function' && typeof runnerOrOpts !== 'object') {
      throw new ValidationError('a runner function is required');
    }
    if (!this.executor.accepting) throw new UnavailableError('this instance is shutting down');
    const onOwnerLost = opts.onOwnerLost ?? 'fail';
    if (!ON_OWNER_LOST.includes(onOwnerLost)) {
      throw new ValidationError(`on_owner_lost must be one of ${ON_OWNER_LOST.join(', ')}`, { field: 'on_owner_lost' });
    }
    const maxRetries = opts.maxRetries ?? 0;
    if (!Number.isSafeInteger(maxRetries) || maxRetries < 0 || maxRetries > 100) {
      throw new ValidationError('max_retries must be an integer from 0 to 100', { field: 'max_retries' });
    }
    let agent: string | null = null;
    if (runner === undefined) {
      agent = opts.agent ?? this.options.defaultAgent;
      if (!isAgentName(agent)) throw new ValidationError('an agent name is 1 to 64 letters, digits and _ . : -', { field: 'agent' });
    } else if (opts.agent !== undefined) {
      throw new ValidationError('agent names an agent to run; a run with a runner function runs that function here', { field: 'agent' });
    } else if (onOwnerLost !== 'fail') {
      throw new ValidationError('a run with a runner function is pinned to this instance: its on_owner_lost is fail', { field: 'on_owner_lost' });
    }
    const ifBusy = opts.ifBusy ?? 'reject';
    if (!IF_BUSY.includes(ifBusy)) throw new ValidationError(`if_busy must be one of ${IF_BUSY.join(', ')}`, { field: 'if_busy' });
    const input = opts.input ?? null;
    const persistOutput = opts.persistOutput ?? false;
    if (typeof persistOutput !== 'boolean') throw new ValidationError('persist_output must be a boolean', { field: 'persist_output' });
    const debounceMs = opts.debounceMs;
    if (debounceMs !== undefined && (!Number.isSafeInteger(debounceMs) || debounceMs < 1 || debounceMs > MAX_DEBOUNCE_MS)) {
      throw new ValidationError(`debounce_ms must be an integer from 1 to ${MAX_DEBOUNCE_MS}`, { field: 'debounce_ms' });
    }
    if (ifBusy === 'debounce' && debounceMs === undefined) {
      throw new ValidationError('if_busy debounce needs debounce_ms', { field: 'debounce_ms' });
    }
    checkSize('input', input, this.options.maxInputBytes, this.jsonShape);
    await this.executor.ready();
    const tenant = opts.tenant ?? DEFAULT_TENANT;
    const id = uuidv7();
    const session = sessionId;
    // An agent run starts here only in a slot of a worker of this instance.
    const slot: WorkerSlot | null = agent === null ? null : this.workers.reserve(agent);
    const local = runner ?? slot?.runner;
    const takesInput = opts.takesInput ?? slot?.takesInput ?? local?.takesInput ?? false;
    if (typeof takesInput !== 'boolean') {
      slot?.release();
      throw new ValidationError('takesInput must be a boolean', { field: 'takes_input' });
    }
    if (local) {
      this.executor.register({ id, sessionId: session, tenant, input, runner: local, onEnded: slot?.release });
      // Inside an idempotent call the row may still roll back: then the run is forgotten.
      onRollback(() => this.executor.discard(id));
    }
    let result;
    try {
      result = await this.repo.start({
        tenant,
        sessionId: session,
        runId: id,
        owner: this.executor.instanceId,
        input,
        leaseMs: this.options.leaseMs,
        ifBusy,
        maxQueued: this.options.maxQueued,
        persistOutput,
        debounceMs: ifBusy === 'debounce' ? debounceMs : undefined,
        takesInput,
        agent,
        onOwnerLost,
        maxRetries,
        startHere: slot !== null,
      });
    } catch (err) {
      if (local) this.executor.discard(id);
      throw err;
    }
    // The input joined a run that exists, or the new run waits for a worker to claim it: this
    // instance has nothing of its own to execute now.
    const forWorkers = agent !== null && result.created && result.run.owner === null;
    if (local && (!result.created || forWorkers)) this.executor.discard(id);
    const recorded = result;
    // Caches, live output, signals, wake-ups and the launch wait for the commit (commit-effects.ts).
    await afterCommit(async () => {
      if (recorded.session) await this.options.onSessionWritten(recorded.session);
      await this.executor.publish(tenant, session, recorded.events);
      const requestedAt = preciseNow();
      if (recorded.interrupted.length > 0) this.telemetry.interruptRequested(recorded.interrupted.length);
      for (const r of [...recorded.interrupted, ...recorded.cancelled]) {
        await this.executor.deliver(r.owner, { type: 'interrupt', sessionId: r.sessionId, runId: r.id, requestedAt });
      }
      if (recorded.decision === 'steered' && recorded.inputSeq !== null) {
        const r = recorded.run;
        await this.executor.deliver(r.owner, { type: 'input', sessionId: r.sessionId, runId: r.id, seq: recorded.inputSeq });
      }
      if (forWorkers && agent !== null) this.workers.wake(agent, { sessionId: session, runId: id });
      else if (recorded.created) this.executor.recorded(recorded.run, recorded.session);
    });
    return { ...result.run, decision: result.decision };
  }

  /** Executes queued runs of `agent` on this instance, at most `concurrency` at once (docs/runs.md, "Workers"). */
  serve(agent: string, runner: Runner, opts: ServeOptions = {}): ServeHandle {
    try {
      return this.workers.serve(agent, runner, opts);
    } catch (err) {
      if (err instanceof TypeError) throw new ValidationError(err.message);
      throw err;
    }
  }

  async get(sessionId: string, runId: string, opts: CallOptions = {}): Promise<Run> {
    throwIfAborted(opts.signal);
    checkId(sessionId, 'session id');
    checkId(runId, 'run id');
    const run = await this.repo.get(opts.tenant ?? DEFAULT_TENANT, sessionId, runId);
    if (!run) throw new RunError('run_not_found', `run ${runId} not found`, { id: runId });
    return run;
  }

  /** Runs of a session, newest first. */
  async list(sessionId: string, query: { cursor?: string; limit?: number } = {}, opts: CallOptions = {}): Promise<Page<Run>> {
    throwIfAborted(opts.signal);
    checkId(sessionId, 'session id');
    const limit = query.limit ?? 20;
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > 100) {
      throw new ValidationError('limit must be between 1 and 100', { field: 'limit' });
    }
    const page = await this.repo.list(opts.tenant ?? DEFAULT_TENANT, sessionId, { cursor: query.cursor, limit });
    if (!page) throw new NotFoundError('session', sessionId);
    return page;
  }

  /**
   * Interrupts the session's running run (or cancels the queued run `runId` names), from
   * any instance. Resolves to the run as flagged; its owner aborts it at once through the
   * SignalBus, or at its next heartbeat if the signal is lost.
   */
  async interrupt(sessionId: string, opts: InterruptOptions = {}): Promise<Run> {
    throwIfAborted(opts.signal);
    checkId(sessionId, 'session id');
    if (opts.runId !== undefined) checkId(opts.runId, 'run id');
    const waitMs = opts.waitMs ?? 0;
    if (!Number.isSafeInteger(waitMs) || waitMs < 0 || waitMs > MAX_INTERRUPT_WAIT_MS) {
      throw new ValidationError(`wait_ms must be an integer from 0 to ${MAX_INTERRUPT_WAIT_MS}`, { field: 'wait_ms' });
    }
    const tenant = opts.tenant ?? DEFAULT_TENANT;
    // A promoted run (the cancelled one headed a queue nothing ran ahead of) is told too: its owner starts it.
    const runs = await this.repo.requestInterrupt(tenant, sessionId, opts.runId, this.options.leaseMs);
    if (runs === null) throw new NotFoundError('session', sessionId);
    const first = runs[0];
    if (!first) {
      if (opts.runId !== undefined) {
        const run = await this.repo.get(tenant, sessionId, opts.runId);
        if (!run) throw new RunError('run_not_found', `run ${opts.runId} not found`, { id: opts.runId });
        throw new RunError('run_ended', `run ${opts.runId} is ${run.status}`, { status: run.status });
      }
      throw new RunError('no_active_run', `session ${sessionId} has no running run`);
    }
    await afterCommit(async () => {
      const requestedAt = preciseNow();
      this.telemetry.interruptRequested(runs.length);
      for (const r of runs) await this.executor.deliver(r.owner, { type: 'interrupt', sessionId: r.sessionId, runId: r.id, requestedAt });
    });
    if (waitMs === 0 || isRunEnded(first)) return first;
    return this.awaitEnd(tenant, first, Date.now() + waitMs, opts.signal);
  }

  /**
   * The run `run` names once it ended, or as it is after `waitMs`: what `interrupt` with
   * `waitMs` answers, for a caller that flagged the run in a transaction of its own (an
   * idempotent HTTP interrupt commits first, then waits outside it).
   */
  async waitForEnd(run: Run, waitMs: number, signal?: AbortSignal): Promise<Run> {
    if (waitMs === 0 || isRunEnded(run)) return run;
    return this.awaitEnd(run.tenantId, run, Date.now() + waitMs, signal);
  }

  /**
   * The run once it ended, or as it is at `deadline`, wherever it runs. Event-driven: here, the
   * executor's own promise; elsewhere, the session's live output log, which carries the run's
   * terminal event from whichever instance finalized it. The run row is read again when that
   * event (or any quiet spell, backing off from 50 ms to 1 s) comes, so a lost publish costs
   * at most a second.
   */
  private async awaitEnd(tenant: string, flagged: Run, deadline: number, signal: AbortSignal | undefined): Promise<Run> {
    const { sessionId, id } = flagged;
    // This instance's promise settles when it lets go of the run, which is not always its end (a
    // drain hands a retry run back): after that, the run is followed wherever it went.
    let local = this.executor.whenEnded(id);
    const key = sessionKey(tenant, sessionId);
    let cursor: number | null = null;
    let quietMs = 50;
    for (;;) {
      // The output seq first: the terminal event of a run still going when the row is read comes after it.
      if (local === null && cursor === null) cursor = (await this.repo.streamStart(tenant, sessionId))?.outputSeq ?? 0;
      const run = await this.repo.get(tenant, sessionId, id);
      if (!run) throw new RunError('run_not_found', `run ${id} not found`, { id });
      const left = deadline - Date.now();
      if (isRunEnded(run) || left <= 0) return run;
      if (local !== null) {
        const settled = await abortable(settledWithin(local, left), signal);
        if (settled) local = null;
        continue;
      }
      // Events of the run that is stopping (or of the next one) until its terminal event shows.
      for (;;) {
        const timeoutMs = Math.min(quietMs, Math.max(1, deadline - Date.now()));
        const events = await this.options.live.read(key, cursor ?? 0, { timeoutMs, signal });
        throwIfAborted(signal);
        const fresh = events.filter((e) => e.seq > (cursor ?? 0));
        if (fresh.length === 0) {
          quietMs = Math.min(quietMs * 2, 1_000);
          break;
        }
        cursor = fresh[fresh.length - 1]?.seq ?? cursor;
        if (fresh.some((e) => e.runId === id && isTerminalEvent(e)) || Date.now() >= deadline) break;
      }
    }
  }

  /** Forwards input to the session's running run, wherever it runs. */
  async sendInput(sessionId: string, input: unknown, opts: InputOptions = {}): Promise<{ runId: string; seq: number }> {
    throwIfAborted(opts.signal);
    checkId(sessionId, 'session id');
    if (opts.runId !== undefined) checkId(opts.runId, 'run id');
    if (input === undefined) throw new ValidationError('input is required', { field: 'input' });
    checkSize('input', input, this.options.maxInputBytes, this.jsonShape);
    const stored = await this.repo.addInput(opts.tenant ?? DEFAULT_TENANT, sessionId, opts.runId, input);
    if (!stored) throw new NotFoundError('session', sessionId);
    if (!stored.run) throw new RunError('no_active_run', `session ${sessionId} has no running run to take input`);
    const run = stored.run;
    await afterCommit(() => this.executor.deliver(run.owner, { type: 'input', sessionId: run.sessionId, runId: run.id, seq: stored.seq }));
    return { runId: run.id, seq: stored.seq };
  }

  /**
   * The session's output from `after` (default: the start of its current or latest run),
   * ending after the next terminal event. Leaving the loop releases everything.
   */
  stream(sessionId: string, opts: StreamOptions = {}): AsyncIterable<OutputEvent> {
    return { [Symbol.asyncIterator]: () => this.streamEvents(sessionId, opts) };
  }

  private async *streamEvents(sessionId: string, opts: StreamOptions): AsyncGenerator<OutputEvent, void, undefined> {
    throwIfAborted(opts.signal);
    checkId(sessionId, 'session id');
    if (opts.after !== undefined && (!Number.isSafeInteger(opts.after) || opts.after < 0)) {
      throw new ValidationError('after must be a non-negative integer', { field: 'after' });
    }
    const start = await this.repo.streamStart(opts.tenant ?? DEFAULT_TENANT, sessionId);
    if (!start) throw new NotFoundError('session', sessionId);
    const startSeq = start.run?.startSeq ?? null;
    const after = opts.after ?? (startSeq !== null ? startSeq - 1 : start.outputSeq);
    yield* readOutput({
      repository: this.repo,
      live: this.options.live,
      tenant: opts.tenant ?? DEFAULT_TENANT,
      sessionId,
      after,
      signal: opts.signal,
      pollMs: this.readPollMs,
    });
  }

  /** Resolves to the run once it has ended. */
  async wait(sessionId: string, runId: string, opts: CallOptions = {}): Promise<Run> {
    const local = this.executor.whenEnded(runId);
    if (local) {
      const done = await abortable(local, opts.signal);
      // Let go of here but not ended (a drain handed it back): it goes on elsewhere.
      if (done.tenantId === (opts.tenant ?? DEFAULT_TENANT) && isRunEnded(done)) return done;
    }
    for (;;) {
      const run = await this.get(sessionId, runId, opts);
      if (run.status !== 'running' && run.status !== 'queued') return run;
      await sleep(100, opts.signal);
    }
  }
}

function checkId(id: string, what: 'session id' | 'run id'): void {
  if (what === 'session id' ? !isSessionId(id) : typeof id !== 'string' || !isUuid(id)) {
    throw new ValidationError(what === 'session id' ? 'not a session id' : 'a run id is a UUID', { field: 'id' });
  }
}

function checkSize(what: string, value: unknown, max: number, shape: JsonShapeLimits): void {
  checkJsonValue(value, shape, what);
  let bytes: number;
  try {
    bytes = jsonBytes(value);
  } catch {
    throw new ValidationError(`${what} must be JSON`);
  }
  if (bytes > max) throw new AgentSessionsError('limit_exceeded', `${what} exceeds ${max} bytes`, { details: { limit: max } });
}

/** Resolves or rejects with `promise`, or rejects with the signal's reason once it fires. */
function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  throwIfAborted(signal);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/** Resolves once `promise` settled or `ms` passed, whichever comes first; leaves no timer behind. */
/** Resolves true when `promise` settled within `ms`, false when the time ran out first. */
function settledWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    const done = () => {
      clearTimeout(timer);
      resolve(true);
    };
    promise.then(done, done);
  });
}
