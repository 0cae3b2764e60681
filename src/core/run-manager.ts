/**
 * RunManager: starts runs, executes them on this instance, and lets any instance read their
 * output, interrupt them and feed them input (SPEC §6 rules 6-8, §7).
 *
 * Ownership is a lease renewed by a heartbeat. Every signal has a fast path (the SignalBus)
 * and a durable path (a row the owner reads at every heartbeat): an interrupt is
 * `runs.interrupt_requested_at`, input is `run_inputs`, a promotion from the queue is the
 * run's status. Signals are addressed to a run id, so a signal for a run that has ended
 * never touches the next one.
 */
import { throwIfAborted } from './abort.js';
import { AgentSessionsError, NotFoundError, RunError, UnavailableError, ValidationError } from './errors.js';
import { isUuid, uuidv7 } from './ids.js';
import { checkOutputEvent, jsonBytes } from './limits.js';
import { OutputWriter, readOutput } from './output-stream.js';
import type { Logger } from './logger.js';
import type { Lifecycle } from './ports.js';
import { AsyncQueue } from './async-queue.js';
import { NO_RUN_TELEMETRY, type RunTelemetry } from './telemetry.js';
import {
  IF_BUSY,
  TERMINAL_EVENT_TYPES,
  type EndedRunStatus,
  type FinalizeResult,
  type HeartbeatRow,
  type InputOptions,
  type InterruptOptions,
  type NewOutputEvent,
  type OutputEvent,
  type OutputLog,
  type Run,
  type RunContext,
  type RunRepository,
  type Runner,
  type RunResult,
  type Runs,
  type RunSignal,
  type SignalBus,
  type StartRunOptions,
  type StreamOptions,
} from './runs.js';
import { DEFAULT_TENANT, type CallOptions, type Page, type Session } from './types.js';

/** The logging calls the run manager makes (pino's Logger satisfies it). */
export type RunLogger = Pick<Logger, 'info' | 'warn' | 'error'>;

export interface RunManagerOptions {
  repository: RunRepository;
  bus: SignalBus;
  live: OutputLog;
  instanceId: string;
  leaseMs: number;
  /** How often leases are renewed and durable signals checked (default leaseMs / 3). */
  heartbeatMs?: number;
  maxQueued: number;
  maxEventBytes: number;
  maxInputBytes: number;
  /** How long a stream reader waits on the live log before it checks the archive (default 1000). */
  readPollMs?: number;
  /** How long a runner may take to return after its signal fired before the run is ended anyway. */
  abortGraceMs?: number;
  loadSession: (tenant: string, id: string) => Promise<Session | null>;
  /** Called with every session row a run write changed, so caches stay right. */
  onSessionWritten: (session: Session) => Promise<void>;
  logger?: RunLogger;
  /** The runner used when none is given (the HTTP API's agent). */
  agent?: Runner;
  /** Where interrupts and finished runs are reported (metrics). */
  telemetry?: RunTelemetry;
}

type AbortReason = 'interrupted' | 'owner_lost' | 'owner_shutdown' | 'session_ended' | 'output_failed';

interface LocalRun {
  id: string;
  sessionId: string;
  tenant: string;
  input: unknown;
  runner: Runner;
  state: 'pending' | 'queued' | 'running' | 'finishing';
  controller: AbortController;
  abortReason: AbortReason | null;
  interrupt: { requestedAt: number | null; abortedAt: number | null; via: 'signal' | 'heartbeat' | 'before_start' } | null;
  inputs: AsyncQueue<unknown>;
  inputSeq: number;
  pullingInputs: Promise<void> | null;
  writer: OutputWriter | null;
  done: Promise<Run>;
  resolveDone: (run: Run) => void;
}

/** Wall-clock milliseconds with sub-millisecond precision, comparable across processes on one host. */
export function preciseNow(): number {
  return performance.timeOrigin + performance.now();
}

const EVENT_TYPE = /^[A-Za-z][\w.:-]{0,63}$/;

export class RunManager implements Runs, Lifecycle {
  readonly agent: Runner | null;
  private readonly repo: RunRepository;
  private readonly bus: SignalBus;
  private readonly live: OutputLog;
  private readonly options: RunManagerOptions;
  private readonly heartbeatMs: number;
  private readonly readPollMs: number;
  private readonly abortGraceMs: number;
  private readonly telemetry: RunTelemetry;
  private readonly local = new Map<string, LocalRun>();
  private unsubscribe: (() => Promise<void>) | null = null;
  private timer: NodeJS.Timeout | null = null;
  private beating: Promise<void> | null = null;
  private starting: Promise<void> | null = null;
  private closing: Promise<void> | null = null;

  constructor(options: RunManagerOptions) {
    this.options = options;
    this.repo = options.repository;
    this.bus = options.bus;
    this.live = options.live;
    this.agent = options.agent ?? null;
    this.heartbeatMs = options.heartbeatMs ?? Math.max(50, Math.floor(options.leaseMs / 3));
    this.readPollMs = options.readPollMs ?? 1_000;
    this.abortGraceMs = options.abortGraceMs ?? 15_000;
    this.telemetry = options.telemetry ?? NO_RUN_TELEMETRY;
  }

  get instanceId(): string {
    return this.options.instanceId;
  }

  /** Subscribes to this instance's signals and starts the heartbeat. Idempotent. */
  ready(): Promise<void> {
    this.starting ??= (async () => {
      this.unsubscribe = await this.bus.subscribe(this.instanceId, (s) => this.onSignal(s));
      this.timer = setInterval(() => void this.heartbeat(), this.heartbeatMs);
      this.timer.unref();
    })();
    return this.starting;
  }

  /**
   * Stops taking runs, interrupts the runs executing here (they end `failed`/`owner_shutdown`)
   * and waits for them to be finalized, up to the abort grace period. Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const runs = [...this.local.values()];
      for (const local of runs) {
        if (local.state === 'queued') void this.finishQueued(local, 'owner_shutdown');
        else this.abort(local, 'owner_shutdown');
      }
      const grace = new Promise<void>((r) => setTimeout(r, this.abortGraceMs + 1_000).unref());
      await Promise.race([Promise.allSettled(runs.map((l) => l.done)), grace]);
      if (this.timer) clearInterval(this.timer);
      this.timer = null;
      await this.beating;
      await this.unsubscribe?.().catch(() => undefined);
    })();
    return this.closing;
  }

  /** Runs executing or queued on this instance. */
  get localRunCount(): number {
    return this.local.size;
  }

  /** Runs on this instance: executing (or starting, or finishing) and queued behind another run. */
  localRunCounts(): { running: number; queued: number } {
    let queued = 0;
    for (const l of this.local.values()) if (l.state === 'queued') queued++;
    return { running: this.local.size - queued, queued };
  }

  // -------------------------------------------------------------------------------------
  // Library API

  /**
   * Starts a run of `runner` on this instance. Resolves once the run is recorded (running,
   * or queued with `ifBusy: 'enqueue' | 'interrupt'`); the runner goes on in the background.
   */
  async start(sessionId: string, runner: Runner | undefined = this.agent ?? undefined, opts: StartRunOptions = {}): Promise<Run> {
    throwIfAborted(opts.signal);
    checkId(sessionId, 'session id');
    if (typeof runner !== 'function') throw new ValidationError('a runner function is required');
    if (this.closing) throw new UnavailableError('this instance is shutting down');
    const ifBusy = opts.ifBusy ?? 'reject';
    if (!IF_BUSY.includes(ifBusy)) throw new ValidationError(`if_busy must be one of ${IF_BUSY.join(', ')}`, { field: 'if_busy' });
    const input = opts.input ?? null;
    this.checkSize('input', input, this.options.maxInputBytes);
    await this.ready();
    const tenant = opts.tenant ?? DEFAULT_TENANT;
    const runId = uuidv7();
    // Registered before the row exists, so a signal that arrives at once is not lost.
    const local = this.register(runId, sessionId.toLowerCase(), tenant, input, runner);
    let result;
    try {
      result = await this.repo.start({
        tenant,
        sessionId: local.sessionId,
        runId,
        owner: this.instanceId,
        input,
        leaseMs: this.options.leaseMs,
        ifBusy,
        maxQueued: this.options.maxQueued,
      });
    } catch (err) {
      this.local.delete(runId);
      throw err;
    }
    if (result.session) await this.options.onSessionWritten(result.session);
    await this.publish(local.sessionId, result.events);
    const requestedAt = preciseNow();
    if (result.interrupted.length > 0) this.telemetry.interruptRequested(result.interrupted.length);
    for (const r of result.interrupted) await this.deliver(r.owner, { type: 'interrupt', sessionId: r.sessionId, runId: r.id, requestedAt });
    for (const r of result.cancelled) await this.deliver(r.owner, { type: 'interrupt', sessionId: r.sessionId, runId: r.id, requestedAt });
    if (result.run.status === 'running') {
      this.launch(local, result.session);
    } else {
      local.state = 'queued';
    }
    return result.run;
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
    const tenant = opts.tenant ?? DEFAULT_TENANT;
    const runs = await this.repo.requestInterrupt(tenant, sessionId, opts.runId);
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
    const requestedAt = preciseNow();
    this.telemetry.interruptRequested(runs.length);
    for (const r of runs) await this.deliver(r.owner, { type: 'interrupt', sessionId: r.sessionId, runId: r.id, requestedAt });
    return first;
  }

  /** Forwards input to the session's running run, wherever it runs. */
  async sendInput(sessionId: string, input: unknown, opts: InputOptions = {}): Promise<{ runId: string; seq: number }> {
    throwIfAborted(opts.signal);
    checkId(sessionId, 'session id');
    if (opts.runId !== undefined) checkId(opts.runId, 'run id');
    if (input === undefined) throw new ValidationError('input is required', { field: 'input' });
    this.checkSize('input', input, this.options.maxInputBytes);
    const stored = await this.repo.addInput(opts.tenant ?? DEFAULT_TENANT, sessionId, opts.runId, input);
    if (!stored) throw new NotFoundError('session', sessionId);
    if (!stored.run) throw new RunError('no_active_run', `session ${sessionId} has no running run to take input`);
    await this.deliver(stored.run.owner, { type: 'input', sessionId: stored.run.sessionId, runId: stored.run.id, seq: stored.seq });
    return { runId: stored.run.id, seq: stored.seq };
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
      live: this.live,
      sessionId: sessionId.toLowerCase(),
      after,
      signal: opts.signal,
      pollMs: this.readPollMs,
    });
  }

  /** Resolves to the run once it has ended. */
  async wait(sessionId: string, runId: string, opts: CallOptions = {}): Promise<Run> {
    const local = this.local.get(runId);
    if (local) {
      const done = await abortable(local.done, opts.signal);
      if (done.tenantId === (opts.tenant ?? DEFAULT_TENANT)) return done;
    }
    for (;;) {
      const run = await this.get(sessionId, runId, opts);
      if (run.status !== 'running' && run.status !== 'queued') return run;
      await abortable(new Promise((r) => setTimeout(r, 100)), opts.signal);
    }
  }

  /**
   * The orphan sweep: finalizes runs whose owner stopped renewing the lease as
   * `failed`/`owner_lost` (their readers get the terminal event) and starts what was queued
   * behind them. Safe on every instance at once. Resolves to the number of runs it ended.
   */
  async sweepOrphans(limit = 50): Promise<number> {
    const candidates = await this.repo.orphans(limit);
    let ended = 0;
    for (const c of candidates) {
      const result = await this.repo.finalize({
        sessionId: c.sessionId,
        runId: c.id,
        owner: null,
        status: 'failed',
        reason: 'owner_lost',
        error: 'the instance running this run stopped renewing its lease',
        sessionStatus: 'idle',
        leaseMs: this.options.leaseMs,
      });
      if (!result) continue;
      ended++;
      this.telemetry.runEnded('failed', 'owner_lost');
      this.options.logger?.warn({ run_id: c.id, session_id: c.sessionId, owner: result.run.owner }, 'orphaned run finalized');
      await this.afterFinalize(result);
    }
    return ended;
  }

  // -------------------------------------------------------------------------------------
  // Execution on the owner

  private register(id: string, sessionId: string, tenant: string, input: unknown, runner: Runner): LocalRun {
    let resolveDone: (run: Run) => void = () => undefined;
    const done = new Promise<Run>((r) => {
      resolveDone = r;
    });
    const local: LocalRun = {
      id,
      sessionId,
      tenant,
      input,
      runner,
      state: 'pending',
      controller: new AbortController(),
      abortReason: null,
      interrupt: null,
      inputs: new AsyncQueue(),
      inputSeq: 0,
      pullingInputs: null,
      writer: null,
      done,
      resolveDone,
    };
    this.local.set(id, local);
    return local;
  }

  private launch(local: LocalRun, session: Session | null): void {
    local.state = 'running';
    local.writer = new OutputWriter({
      repository: this.repo,
      live: this.live,
      sessionId: local.sessionId,
      runId: local.id,
      onLost: () => this.abort(local, 'owner_lost'),
      onFailed: (err) => {
        this.options.logger?.error({ err, run_id: local.id }, 'run output could not be archived');
        this.abort(local, 'output_failed');
      },
      onPublishError: (err) => this.options.logger?.warn({ err, session_id: local.sessionId }, 'live output publish failed'),
    });
    void this.execute(local, session).catch((err: unknown) => {
      this.options.logger?.error({ err, run_id: local.id }, 'run execution failed');
    });
  }

  private context(local: LocalRun, session: Session): RunContext {
    const writer = local.writer as OutputWriter;
    return {
      id: local.id,
      sessionId: local.sessionId,
      tenant: local.tenant,
      session,
      input: local.input,
      signal: local.controller.signal,
      inputs: local.inputs,
      emit: (event: NewOutputEvent) => {
        this.checkEvent(event);
        if (local.state !== 'running') return handled(Promise.reject(new RunError('run_ended', `run ${local.id} has ended`)));
        return handled(writer.push({ type: event.type, data: event.data ?? null }));
      },
    };
  }

  private async execute(local: LocalRun, snapshot: Session | null): Promise<void> {
    const signal = local.controller.signal;
    let outcome: { ok: true; result: RunResult | void } | { ok: false; error: unknown } = { ok: true, result: undefined };
    if (signal.aborted) {
      // Interrupted before it started: the runner is never called.
      if (local.interrupt) local.interrupt.via = 'before_start';
    } else {
      const session = snapshot ?? (await this.options.loadSession(local.tenant, local.sessionId).catch(() => null));
      if (!session) {
        outcome = { ok: false, error: new Error('the session could not be read') };
      } else {
        const running = (async () => local.runner(this.context(local, session)))().then(
          (result) => ({ ok: true as const, result }),
          (error: unknown) => ({ ok: false as const, error }),
        );
        // After an abort the runner gets a grace period to return; then the run ends anyway.
        const gaveUp = new Promise<null>((resolve) => {
          const onAbort = () => setTimeout(() => resolve(null), this.abortGraceMs).unref();
          if (signal.aborted) onAbort();
          else signal.addEventListener('abort', onAbort, { once: true });
        });
        outcome = (await Promise.race([running, gaveUp])) ?? { ok: false, error: new Error('runner did not stop') };
      }
    }
    local.state = 'finishing';
    local.inputs.end(true);
    if (local.abortReason === 'owner_lost') {
      local.writer?.close(new RunError('run_ended', `run ${local.id} was lost`));
      this.forget(local, null);
      return;
    }
    await local.writer?.flush();
    local.writer?.close(new RunError('run_ended', `run ${local.id} has ended`));
    const end = this.outcome(local, outcome);
    const result = await this.finalizeOwned(local, end);
    if (result) {
      this.telemetry.runEnded(end.status, end.reason);
      if (end.status === 'interrupted' && local.interrupt?.abortedAt && local.interrupt.requestedAt) {
        this.options.logger?.info(
          {
            run_id: local.id,
            session_id: local.sessionId,
            latency_ms: Math.round((local.interrupt.abortedAt - local.interrupt.requestedAt) * 100) / 100,
            via: local.interrupt.via,
          },
          'run interrupted',
        );
      }
      await this.afterFinalize(result);
    }
    this.forget(local, result?.run ?? null);
  }

  private outcome(
    local: LocalRun,
    outcome: { ok: true; result: RunResult | void } | { ok: false; error: unknown },
  ): { status: EndedRunStatus; reason: string; error: string | null; sessionStatus: 'idle' | 'waiting_input'; details?: Record<string, unknown> } {
    const base = { sessionStatus: 'idle' as const };
    switch (local.abortReason) {
      case 'interrupted': {
        const i = local.interrupt;
        return {
          ...base,
          status: 'interrupted',
          reason: 'interrupted',
          error: null,
          details: i ? { interrupt: { requested_at: i.requestedAt, aborted_at: i.abortedAt, via: i.via } } : {},
        };
      }
      case 'session_ended':
        return { ...base, status: 'interrupted', reason: 'session_ended', error: null };
      case 'owner_shutdown':
        return { ...base, status: 'failed', reason: 'owner_shutdown', error: 'the instance running this run shut down' };
      case 'output_failed':
        return { ...base, status: 'failed', reason: 'output_failed', error: 'run output could not be stored' };
      default:
        break;
    }
    if (!outcome.ok) {
      const err = outcome.error;
      const message = err instanceof Error ? err.message : String(err);
      return { ...base, status: 'failed', reason: 'runner_error', error: message.slice(0, 4_096) };
    }
    const sessionStatus = outcome.result && outcome.result.sessionStatus === 'waiting_input' ? 'waiting_input' : 'idle';
    return { status: 'completed', reason: 'completed', error: null, sessionStatus };
  }

  /** Finalizes, retrying through a database outage for as long as the lease would have lasted. */
  private async finalizeOwned(
    local: LocalRun,
    end: ReturnType<RunManager['outcome']>,
  ): Promise<FinalizeResult | null> {
    const deadline = Date.now() + this.options.leaseMs * 3;
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.repo.finalize({
          sessionId: local.sessionId,
          runId: local.id,
          owner: this.instanceId,
          leaseMs: this.options.leaseMs,
          ...end,
        });
      } catch (err) {
        if (Date.now() > deadline) {
          this.options.logger?.error({ err, run_id: local.id }, 'run could not be finalized; the orphan sweep will end it');
          return null;
        }
        await new Promise((r) => setTimeout(r, Math.min(50 * 2 ** attempt, 1_000)));
      }
    }
  }

  private async afterFinalize(result: FinalizeResult): Promise<void> {
    // Caches first: a reader who sees the terminal event and then reads the session (on this
    // instance or another) must find the session as the finalization left it.
    if (result.session) await this.options.onSessionWritten(result.session);
    await this.publish(result.run.sessionId, result.events);
    const promoted = result.promoted;
    if (promoted) await this.deliver(promoted.owner, { type: 'promoted', sessionId: promoted.sessionId, runId: promoted.id });
    const requestedAt = preciseNow();
    for (const r of result.cancelled) await this.deliver(r.owner, { type: 'interrupt', sessionId: r.sessionId, runId: r.id, requestedAt });
  }

  private forget(local: LocalRun, run: Run | null): void {
    this.local.delete(local.id);
    local.inputs.end(true);
    if (run) {
      local.resolveDone(run);
    } else {
      void this.repo.get(local.tenant, local.sessionId, local.id).then(
        (r) => r && local.resolveDone(r),
        () => undefined,
      );
    }
  }

  /** A queued run of this instance that ended without running (cancelled, swept, or shutdown). */
  private async finishQueued(local: LocalRun, reason?: 'owner_shutdown'): Promise<void> {
    if (reason) {
      const result = await this.repo
        .finalize({
          sessionId: local.sessionId,
          runId: local.id,
          owner: this.instanceId,
          status: 'failed',
          reason,
          error: 'the instance holding this queued run shut down',
          sessionStatus: 'idle',
          leaseMs: this.options.leaseMs,
        })
        .catch(() => null);
      if (result) {
        this.telemetry.runEnded('failed', reason);
        await this.afterFinalize(result);
      }
    }
    this.forget(local, null);
  }

  private abort(
    local: LocalRun,
    reason: AbortReason,
    via: 'signal' | 'heartbeat' | 'before_start' = 'signal',
    requestedAt?: number,
    /** The request time as the database recorded it (heartbeat path): for the latency metric only. */
    recordedAt?: number,
  ): void {
    if (local.controller.signal.aborted) return;
    local.abortReason = reason;
    if (reason === 'interrupted') {
      const abortedAt = preciseNow();
      local.interrupt = { requestedAt: requestedAt ?? null, abortedAt, via };
      // Across hosts the clocks may disagree a little; a negative difference counts as no wait.
      const since = requestedAt ?? recordedAt;
      this.telemetry.interruptDelivered(via, since === undefined ? null : Math.max(0, abortedAt - since) / 1000);
    }
    const error =
      reason === 'interrupted'
        ? new RunError('interrupted', `run ${local.id} was interrupted`)
        : new RunError('run_ended', `run ${local.id} stopped: ${reason}`, { reason });
    local.controller.abort(error);
    local.inputs.end(true);
  }

  private onSignal(signal: RunSignal): void {
    const local = this.local.get(signal.runId);
    if (!local) return;
    switch (signal.type) {
      case 'interrupt':
        if (local.state === 'queued') void this.reconcileQueued(local);
        else this.abort(local, 'interrupted', 'signal', signal.requestedAt);
        return;
      case 'input':
        if (local.state === 'running') void this.pullInputs(local);
        return;
      case 'promoted':
        if (local.state === 'queued') void this.reconcileQueued(local);
        return;
    }
  }

  /** Reads a queued run's row and acts on it: start it if it was promoted, forget it if it ended. */
  private async reconcileQueued(local: LocalRun, row?: Pick<HeartbeatRow, 'status' | 'interruptRequested'>): Promise<void> {
    let status = row?.status;
    let interruptRequested = row?.interruptRequested ?? false;
    if (!status) {
      const run = await this.repo.get(local.tenant, local.sessionId, local.id).catch(() => null);
      if (!run) return;
      status = run.status;
      interruptRequested = run.interruptRequestedAt !== null;
    }
    if (local.state !== 'queued') return;
    if (status === 'running') {
      if (interruptRequested) this.abort(local, 'interrupted', 'before_start');
      this.launch(local, null);
    } else if (status !== 'queued') {
      this.forget(local, null);
    }
  }

  private pullInputs(local: LocalRun): Promise<void> {
    local.pullingInputs ??= (async () => {
      try {
        const inputs = await this.repo.readInputs(local.id, local.inputSeq);
        for (const input of inputs) {
          if (input.seq <= local.inputSeq) continue;
          local.inputSeq = input.seq;
          local.inputs.push(input.data);
        }
      } catch (err) {
        this.options.logger?.warn({ err, run_id: local.id }, 'run input could not be read; retried at the next heartbeat');
      } finally {
        local.pullingInputs = null;
      }
    })();
    return local.pullingInputs;
  }

  private heartbeat(): Promise<void> {
    this.beating ??= this.beat()
      .catch((err: unknown) => this.options.logger?.warn({ err }, 'run heartbeat failed'))
      .finally(() => {
        this.beating = null;
      });
    return this.beating;
  }

  private async beat(): Promise<void> {
    const runs = [...this.local.values()].filter((l) => l.state !== 'pending');
    if (runs.length === 0) return;
    const rows = await this.repo.heartbeat(this.instanceId, runs.map((l) => l.id), this.options.leaseMs);
    const byId = new Map(rows.map((r) => [r.id, r]));
    for (const local of runs) {
      const row = byId.get(local.id);
      if (local.state === 'queued') {
        if (!row) this.forget(local, null);
        else void this.reconcileQueued(local, row);
        continue;
      }
      if (local.state !== 'running') continue;
      if (!row || row.owner !== this.instanceId || row.status !== 'running') {
        this.abort(local, 'owner_lost');
        continue;
      }
      if (row.interruptRequested) this.abort(local, 'interrupted', 'heartbeat', undefined, row.interruptRequestedAt ?? undefined);
      if (row.sessionEnded) this.abort(local, 'session_ended');
      if (row.inputSeq > local.inputSeq) void this.pullInputs(local);
    }
  }

  // -------------------------------------------------------------------------------------

  private async deliver(owner: string | null, signal: RunSignal): Promise<void> {
    if (owner === null) return;
    if (owner === this.instanceId) {
      this.onSignal(signal);
      return;
    }
    try {
      await this.bus.publish(owner, signal);
    } catch (err) {
      // The durable path (the owner's next heartbeat) still delivers it.
      this.options.logger?.warn({ err, owner, signal: signal.type }, 'signal not published; the owner sees it at its next heartbeat');
    }
  }

  private async publish(sessionId: string, events: readonly OutputEvent[]): Promise<void> {
    if (events.length === 0) return;
    await this.live.publish(sessionId, events).catch((err: unknown) => {
      this.options.logger?.warn({ err, session_id: sessionId }, 'live output publish failed');
    });
  }

  private checkEvent(event: NewOutputEvent): void {
    if (typeof event !== 'object' || event === null || typeof event.type !== 'string' || !EVENT_TYPE.test(event.type)) {
      throw new ValidationError('an output event needs a type of letters, digits and _ . : - (at most 64)', { field: 'type' });
    }
    if (TERMINAL_EVENT_TYPES.includes(event.type)) {
      throw new ValidationError(`"${event.type}" is written when the run ends; a runner cannot emit it`, { field: 'type' });
    }
    checkOutputEvent({ outputEventBytes: this.options.maxEventBytes }, event.data ?? null);
  }

  private checkSize(what: string, value: unknown, max: number): void {
    let bytes: number;
    try {
      bytes = jsonBytes(value);
    } catch {
      throw new ValidationError(`${what} must be JSON`);
    }
    if (bytes > max) throw new AgentSessionsError('limit_exceeded', `${what} exceeds ${max} bytes`, { details: { limit: max } });
  }
}

function checkId(id: string, what: string): void {
  if (typeof id !== 'string' || !isUuid(id)) throw new ValidationError(`${what} must be a UUID`, { field: 'id' });
}

/** Marks a promise as handled (a caller that ignores it causes no unhandled rejection) and returns it. */
function handled<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => undefined);
  return promise;
}

function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  throwIfAborted(signal);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
