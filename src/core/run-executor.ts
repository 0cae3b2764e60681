/**
 * The owner's side of runs (SPEC §7): the runs this instance executes, each a small state
 * machine (pending → running, or queued → running; then finishing): it launches the runner
 * with its output writer, aborts it on a signal, and finalizes it, retrying through a
 * database outage.
 *
 * Every signal has a fast path (the SignalBus, or a direct call when the sender is this
 * instance) and a durable path that the LeaseKeeper's renewals report: an interrupt is
 * `runs.interrupt_requested_at`, input is `run_inputs`, a promotion from the queue is the
 * run's status. Signals are addressed to a run id, so a signal for a run that has ended never
 * touches the next one.
 */
import { sessionKey } from './ids.js';
import { RunError, ValidationError } from './errors.js';
import { AsyncQueue } from './async-queue.js';
import { LeaseKeeper } from './lease-keeper.js';
import { checkOutputEvent } from './limits.js';
import type { JsonShapeLimits } from './json-shape.js';
import type { Logger } from './logger.js';
import { OutputArchive, OutputWriter } from './output-stream.js';
import type { Lifecycle } from './ports.js';
import {
  SERVICE_EVENT_TYPES,
  GAP_EVENT_TYPE,
  type EndedRunStatus,
  type FinalizeResult,
  type HeartbeatRow,
  type NewOutputEvent,
  type OutputEvent,
  type OutputLog,
  type Run,
  type RunContext,
  type RunRepository,
  type Runner,
  type RunResult,
  type RunSignal,
  type RunUsage,
  type SignalBus,
} from './runs.js';
import { NO_RUN_TELEMETRY, type InterruptPath, type RunTelemetry } from './telemetry.js';
import { NO_TRACING, RUN_ID, SESSION_ID, type Tracing } from './tracing.js';
import type { Session } from './types.js';

/** The logging calls the runs make (pino's Logger satisfies it). */
export type RunLogger = Pick<Logger, 'info' | 'warn' | 'error'>;

/** Wall-clock milliseconds with sub-millisecond precision, comparable across processes on one host. */
export function preciseNow(): number {
  return performance.timeOrigin + performance.now();
}

export interface RunExecutorOptions {
  repository: RunRepository;
  bus: SignalBus;
  live: OutputLog;
  instanceId: string;
  leaseMs: number;
  /** How often leases are renewed and durable signals checked (default leaseMs / 3). */
  heartbeatMs?: number;
  maxEventBytes: number;
  /** Bounds on an output event's data (default 256 levels, 100,000 nodes). */
  jsonShape?: JsonShapeLimits;
  /** How long a runner may take to return after its signal fired before the run is ended anyway. */
  abortGraceMs?: number;
  loadSession: (tenant: string, id: string) => Promise<Session | null>;
  /** Called with every session row a run write changed, so caches stay right. */
  onSessionWritten: (session: Session) => Promise<void>;
  logger?: RunLogger;
  /** Where interrupts and finished runs are reported (metrics). */
  telemetry?: RunTelemetry;
  /**
   * Each execution is a span (`run.execute`) in a trace of its own, linked to the span that
   * started it: a run outlives the request that asked for it.
   */
  tracing?: Tracing;
  /** A run executing longer than this ends `failed`/`run_max_ms`; 0 or absent: no limit. */
  runMaxMs?: number;
  /** A run that emits nothing for this long ends `failed`/`run_idle_output`; 0 or absent: no limit. */
  runIdleOutputMs?: number;
  /** How long `close` lets running runs finish before it hands them back or ends them (default 0). */
  drainTimeoutMs?: number;
  /** Wakes the workers of an agent (a run of it may be claimable now); default: nobody is told. */
  wakeWorkers?: (agent: string) => void;
  /**
   * With at least `outputCommitSiblings` runs here, an output statement waits until its oldest
   * batch is this old, so more runs' events share a commit (OutputArchive; default 0: none).
   */
  outputCommitDelayMs?: number;
  outputCommitSiblings?: number;
}

/** A run this instance is about to record (start or queue): registered before its row exists. */
export interface LocalRunSpec {
  id: string;
  sessionId: string;
  tenant: string;
  input: unknown;
  runner: Runner;
  /** Called once when this instance lets go of the run (ended, lost, handed back): a worker's slot is free again. */
  onEnded?: () => void;
}

type AbortReason =
  | 'interrupted'
  | 'owner_lost'
  | 'owner_shutdown'
  | 'session_ended'
  | 'output_failed'
  | 'run_max_ms'
  | 'run_idle_output'
  /** A draining owner handed it back to the queue: another worker runs it again. */
  | 'handed_back';

interface LocalRun extends LocalRunSpec {
  state: 'pending' | 'queued' | 'running' | 'finishing';
  /** Every input the run starts with (its row's `inputs`, read when it starts). */
  initialInputs: readonly unknown[];
  /** A debounced queued run: fires when its window should have closed, to start it (planDuePromotion). */
  dueTimer: NodeJS.Timeout | null;
  controller: AbortController;
  abortReason: AbortReason | null;
  interrupt: { requestedAt: number | null; abortedAt: number | null; via: InterruptPath } | null;
  inputs: AsyncQueue<unknown>;
  inputSeq: number;
  pullingInputs: Promise<void> | null;
  writer: OutputWriter | null;
  done: Promise<Run>;
  resolveDone: (run: Run) => void;
  /** Usage reported so far (RunContext.reportUsage). */
  usage: RunUsage | null;
  /** The run-limit timers (RUN_MAX_MS, RUN_IDLE_OUTPUT_MS) while it executes. */
  limitTimers: { max: NodeJS.Timeout | null; idle: NodeJS.Timeout | null };
}

interface RunEnd {
  status: EndedRunStatus;
  reason: string;
  error: string | null;
  sessionStatus: 'idle' | 'waiting_input';
  details?: Record<string, unknown>;
  usage?: RunUsage;
}

type RunnerOutcome = { ok: true; result: RunResult | void } | { ok: false; error: unknown };

const EVENT_TYPE = /^[A-Za-z][\w.:-]{0,63}$/;

export class RunExecutor implements Lifecycle {
  private readonly repo: RunRepository;
  private readonly options: RunExecutorOptions;
  private readonly abortGraceMs: number;
  private readonly telemetry: RunTelemetry;
  private readonly leases: LeaseKeeper;
  /** Every run's output of this instance goes through one archive: many runs per commit. */
  private readonly archive: OutputArchive;
  private readonly local = new Map<string, LocalRun>();
  /** Runs here with an output writer (launched and not yet forgotten): the commit delay's condition. */
  private writing = 0;
  private unsubscribe: (() => Promise<void>) | null = null;
  private starting: Promise<void> | null = null;
  private closing: Promise<void> | null = null;

  constructor(options: RunExecutorOptions) {
    this.options = options;
    this.repo = options.repository;
    this.archive = new OutputArchive(this.repo, {
      commitDelayMs: options.outputCommitDelayMs,
      commitSiblings: options.outputCommitSiblings,
      writers: () => this.writing,
    });
    this.abortGraceMs = options.abortGraceMs ?? 15_000;
    this.telemetry = options.telemetry ?? NO_RUN_TELEMETRY;
    this.leases = new LeaseKeeper({
      repository: this.repo,
      owner: options.instanceId,
      leaseMs: options.leaseMs,
      intervalMs: options.heartbeatMs ?? Math.max(50, Math.floor(options.leaseMs / 3)),
      // A pending run has no row yet: nothing to renew.
      held: () => [...this.local.values()].filter((l) => l.state !== 'pending').map((l) => l.id),
      report: (ids, rows) => this.onLeaseReport(ids, rows),
      onError: (err) => options.logger?.warn({ err }, 'run heartbeat failed'),
    });
  }

  get instanceId(): string {
    return this.options.instanceId;
  }

  /** Whether new runs may start here (false once `close` began). */
  get accepting(): boolean {
    return this.closing === null;
  }

  /** Subscribes to this instance's signals and starts renewing leases. Idempotent. */
  ready(): Promise<void> {
    this.starting ??= (async () => {
      this.unsubscribe = await this.options.bus.subscribe(this.instanceId, (s) => this.onSignal(s));
      this.leases.start();
    })();
    return this.starting;
  }

  /**
   * Stops taking runs and drains: runs executing here get `drainTimeoutMs` to finish; then a
   * run whose policy is `retry` (with restarts left) is handed back to the queue for another
   * worker, and the others are interrupted (they end `failed`/`owner_shutdown`). Waits for them
   * to be let go of, up to the abort grace period. Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const drainMs = this.options.drainTimeoutMs ?? 0;
      if (drainMs > 0 && this.local.size > 0) {
        const before = this.local.size;
        const drained = new Promise<void>((r) => setTimeout(r, drainMs).unref());
        // Only runs executing here can finish: a pinned run queued behind one elsewhere cannot.
        const executing = [...this.local.values()].filter((l) => l.state !== 'queued');
        await Promise.race([Promise.allSettled(executing.map((l) => l.done)), drained]);
        this.options.logger?.info({ runs: before, finished: before - this.local.size, left: this.local.size }, 'drain: waited for running runs');
      }
      const runs = [...this.local.values()];
      for (const local of runs) {
        if (local.state === 'queued') void this.finishQueued(local, 'owner_shutdown');
        else void this.giveUp(local);
      }
      const grace = new Promise<void>((r) => setTimeout(r, this.abortGraceMs + 1_000).unref());
      await Promise.race([Promise.allSettled(runs.map((l) => l.done)), grace]);
      await this.leases.stop();
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

  /** Resolves to the run once it has ended, when it is (or was about to be) one of this instance's; null otherwise. */
  whenEnded(runId: string): Promise<Run> | null {
    return this.local.get(runId)?.done ?? null;
  }

  // -------------------------------------------------------------------------------------
  // Recording a run (the caller API's start)

  /** Registers a run before its row is written, so a signal that arrives at once is not lost. */
  register(spec: LocalRunSpec): void {
    let resolveDone: (run: Run) => void = () => undefined;
    const done = new Promise<Run>((r) => {
      resolveDone = r;
    });
    this.local.set(spec.id, {
      ...spec,
      state: 'pending',
      initialInputs: [spec.input],
      dueTimer: null,
      controller: new AbortController(),
      abortReason: null,
      interrupt: null,
      inputs: new AsyncQueue(),
      inputSeq: 0,
      pullingInputs: null,
      writer: null,
      done,
      resolveDone,
      usage: null,
      limitTimers: { max: null, idle: null },
    });
  }

  /** The run's row could not be written (or it was queued for a worker): forget it. */
  discard(runId: string): void {
    const local = this.local.get(runId);
    if (local?.writer) this.writing--;
    this.local.delete(runId);
    local?.onEnded?.();
  }

  /** Executes a run a worker of this instance claimed (its row says running, owned here). */
  async adopt(run: Run, runner: Runner, session: Session | null, onEnded?: () => void): Promise<void> {
    this.register({ id: run.id, sessionId: run.sessionId, tenant: run.tenantId, input: run.input, runner, onEnded });
    // Caches first, as a finalization's announcement does.
    if (session) await this.options.onSessionWritten(session).catch(() => undefined);
    this.recorded(run, session);
  }

  /** The run's row is written: execute it now if it runs, else wait for its promotion. */
  recorded(run: Run, session: Session | null): void {
    const local = this.local.get(run.id);
    if (!local || local.state !== 'pending') return;
    local.initialInputs = run.inputs;
    if (run.status === 'running') {
      this.launch(local, session);
    } else {
      local.state = 'queued';
      if (run.notBefore !== null) this.scheduleDue(local, Date.parse(run.notBefore) - Date.now());
    }
  }

  /**
   * A debounced queued run of this instance: once its window closes, start it if it heads the
   * queue and nothing runs (a run ending meanwhile promotes it instead). Its window may have
   * moved (more input came): the database then says how much longer to wait.
   */
  private scheduleDue(local: LocalRun, ms: number): void {
    if (local.dueTimer) clearTimeout(local.dueTimer);
    local.dueTimer = setTimeout(() => {
      local.dueTimer = null;
      void this.promoteDue(local);
    }, Math.max(0, Math.min(ms, 2_147_483_647)));
    local.dueTimer.unref();
  }

  private async promoteDue(local: LocalRun): Promise<void> {
    if (local.state !== 'queued' || this.closing) return;
    let due;
    try {
      due = await this.repo.promoteDue(local.tenant, local.sessionId, local.id, this.options.leaseMs);
    } catch (err) {
      this.options.logger?.warn({ err, run_id: local.id }, 'a debounced run could not be started; trying again');
      this.scheduleDue(local, this.options.heartbeatMs ?? Math.max(50, Math.floor(this.options.leaseMs / 3)));
      return;
    }
    if (due.waitMs !== null) {
      this.scheduleDue(local, due.waitMs);
      return;
    }
    if (!due.run || local.state !== 'queued') return;
    if (due.session) await this.options.onSessionWritten(due.session).catch(() => undefined);
    await this.publish(local.tenant, local.sessionId, due.events);
    if (due.run.status === 'running') {
      local.initialInputs = due.run.inputs;
      this.launch(local, null);
    } else {
      this.forget(local, due.run);
    }
  }

  // -------------------------------------------------------------------------------------
  // Signals and announcements (also used by the caller API and the orphan sweep)

  /** Sends a signal to a run's owner: this instance's own runs directly, others through the SignalBus. */
  async deliver(owner: string | null, signal: RunSignal): Promise<void> {
    if (owner === null) return;
    if (owner === this.instanceId) {
      this.onSignal(signal);
      return;
    }
    try {
      await this.options.bus.publish(owner, signal);
    } catch (err) {
      // The durable path (the owner's next heartbeat) still delivers it.
      this.options.logger?.warn({ err, owner, signal: signal.type }, 'signal not published; the owner sees it at its next heartbeat');
    }
  }

  /** Publishes archived output to live readers; a failure only sends readers to the archive. */
  async publish(tenant: string, sessionId: string, events: readonly OutputEvent[]): Promise<void> {
    if (events.length === 0) return;
    await this.options.live.publish(sessionKey(tenant, sessionId), events).catch((err: unknown) => {
      this.options.logger?.warn({ err, session_id: sessionId }, 'live output publish failed');
    });
  }

  /** Tells caches, readers and owners what a finalization changed. */
  async announce(result: FinalizeResult): Promise<void> {
    // Caches first: a reader who sees the terminal event and then reads the session (on this
    // instance or another) must find the session as the finalization left it.
    if (result.session) await this.options.onSessionWritten(result.session);
    await this.publish(result.run.tenantId, result.run.sessionId, result.events);
    const promoted = result.promoted;
    if (promoted) await this.deliver(promoted.owner, { type: 'promoted', sessionId: promoted.sessionId, runId: promoted.id });
    const requestedAt = preciseNow();
    for (const r of result.cancelled) await this.deliver(r.owner, { type: 'interrupt', sessionId: r.sessionId, runId: r.id, requestedAt });
    for (const agent of new Set(result.claimable ?? [])) this.options.wakeWorkers?.(agent);
  }

  // -------------------------------------------------------------------------------------
  // Execution

  private launch(local: LocalRun, session: Session | null): void {
    local.state = 'running';
    if (local.writer === null) this.writing++;
    local.writer = new OutputWriter({
      archive: this.archive,
      live: this.options.live,
      tenant: local.tenant,
      sessionId: local.sessionId,
      runId: local.id,
      owner: this.instanceId,
      onLost: () => this.abort(local, 'owner_lost'),
      onFailed: (err) => {
        this.options.logger?.error({ err, run_id: local.id }, 'run output could not be archived');
        this.abort(local, 'output_failed');
      },
      onPublishError: (err) => this.options.logger?.warn({ err, session_id: local.sessionId }, 'live output publish failed'),
    });
    const tracing = this.options.tracing ?? NO_TRACING;
    const execution = tracing.enabled
      ? tracing.span('run.execute', { newTrace: true, attributes: { [SESSION_ID]: local.sessionId, [RUN_ID]: local.id } }, () =>
          this.execute(local, session),
        )
      : this.execute(local, session);
    void execution.catch((err: unknown) => {
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
      input: local.initialInputs[0] ?? local.input,
      initialInputs: local.initialInputs,
      signal: local.controller.signal,
      inputs: local.inputs,
      emit: (event: NewOutputEvent) => {
        const json = this.checkEvent(event);
        if (local.state !== 'running') return handled(Promise.reject(new RunError('run_ended', `run ${local.id} has ended`)));
        this.armIdleTimer(local);
        return handled(writer.push({ type: event.type, data: event.data ?? null, json }));
      },
      reportUsage: (usage: RunUsage) => {
        local.usage = addUsage(local.usage, checkUsage(usage));
      },
    };
  }

  /** Starts the run limits' timers (RUN_MAX_MS, RUN_IDLE_OUTPUT_MS). */
  private armLimits(local: LocalRun): void {
    const max = this.options.runMaxMs ?? 0;
    if (max > 0) {
      local.limitTimers.max = setTimeout(() => this.abort(local, 'run_max_ms'), max);
      local.limitTimers.max.unref();
    }
    this.armIdleTimer(local);
  }

  /** (Re)starts the idle-output timer: each event the run emits moves it. */
  private armIdleTimer(local: LocalRun): void {
    const idle = this.options.runIdleOutputMs ?? 0;
    if (idle <= 0 || local.controller.signal.aborted) return;
    if (local.limitTimers.idle) local.limitTimers.idle.refresh();
    else {
      local.limitTimers.idle = setTimeout(() => this.abort(local, 'run_idle_output'), idle);
      local.limitTimers.idle.unref();
    }
  }

  private clearLimits(local: LocalRun): void {
    if (local.limitTimers.max) clearTimeout(local.limitTimers.max);
    if (local.limitTimers.idle) clearTimeout(local.limitTimers.idle);
    local.limitTimers = { max: null, idle: null };
  }

  /**
   * The drain's end for a run still executing: hand it back to the queue when its policy
   * says `retry` (the repository decides on the locked rows), else interrupt it, to end
   * `failed`/`owner_shutdown`.
   */
  private async giveUp(local: LocalRun): Promise<void> {
    if (local.state !== 'running') {
      this.abort(local, 'owner_shutdown');
      return;
    }
    const result = await this.repo
      .finalize({
        tenant: local.tenant,
        sessionId: local.sessionId,
        runId: local.id,
        owner: this.instanceId,
        status: 'failed',
        reason: 'owner_shutdown',
        error: 'the instance running this run shut down',
        sessionStatus: 'idle',
        leaseMs: this.options.leaseMs,
        ownerLost: true,
        // What it reported so far counts, whether it is handed back or ended here.
        ...(local.usage ? { usage: local.usage } : {}),
      })
      .catch((err: unknown) => {
        this.options.logger?.warn({ err, run_id: local.id }, 'drain: run could not be handed back; it is interrupted');
        return null;
      });
    if (result?.run.status === 'queued') {
      this.options.logger?.info({ run_id: local.id, session_id: local.sessionId, attempts: result.run.attempts }, 'drain: run handed back');
      this.abort(local, 'handed_back');
      this.telemetry.runEnded('failed', 'handed_back');
      await this.announce(result);
      return;
    }
    if (result) {
      // Ended here already (owner_shutdown): the runner is stopped and its own finalization finds nothing to do.
      this.options.logger?.info({ run_id: local.id, session_id: local.sessionId }, 'drain: run ended owner_shutdown');
      this.abort(local, 'owner_shutdown');
      this.telemetry.runEnded('failed', 'owner_shutdown');
      await this.announce(result);
      return;
    }
    this.abort(local, 'owner_shutdown');
  }

  private async execute(local: LocalRun, snapshot: Session | null): Promise<void> {
    const signal = local.controller.signal;
    let outcome: RunnerOutcome = { ok: true, result: undefined };
    if (signal.aborted) {
      // Interrupted before it started: the runner is never called.
      if (local.interrupt) local.interrupt.via = 'before_start';
    } else {
      const session = snapshot ?? (await this.options.loadSession(local.tenant, local.sessionId).catch(() => null));
      if (!session) {
        outcome = { ok: false, error: new Error('the session could not be read') };
      } else {
        this.armLimits(local);
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
    this.clearLimits(local);
    if (local.abortReason === 'owner_lost' || local.abortReason === 'handed_back') {
      local.writer?.close(new RunError('run_ended', `run ${local.id} was lost`));
      this.forget(local, null);
      return;
    }
    await local.writer?.flush();
    local.writer?.close(new RunError('run_ended', `run ${local.id} has ended`));
    const end = this.outcome(local, outcome);
    const returned = outcome.ok && outcome.result ? outcome.result.usage : undefined;
    const usage = returned === undefined ? local.usage : addUsage(local.usage, safeUsage(returned));
    if (usage) end.usage = usage;
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
      await this.announce(result);
    }
    this.forget(local, result?.run ?? null);
  }

  /** How the run ends: why it was aborted, else what its runner did. */
  private outcome(local: LocalRun, outcome: RunnerOutcome): RunEnd {
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
      case 'run_max_ms':
        return { ...base, status: 'failed', reason: 'run_max_ms', error: `the run took longer than ${this.options.runMaxMs} ms` };
      case 'run_idle_output':
        return { ...base, status: 'failed', reason: 'run_idle_output', error: `the run emitted nothing for ${this.options.runIdleOutputMs} ms` };
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
  private async finalizeOwned(local: LocalRun, end: RunEnd): Promise<FinalizeResult | null> {
    const deadline = Date.now() + this.options.leaseMs * 3;
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.repo.finalize({
          tenant: local.tenant,
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

  private forget(local: LocalRun, run: Run | null): void {
    if (local.writer && this.local.get(local.id) === local) this.writing--;
    this.local.delete(local.id);
    if (local.dueTimer) clearTimeout(local.dueTimer);
    local.inputs.end(true);
    this.clearLimits(local);
    local.onEnded?.();
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
          tenant: local.tenant,
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
        await this.announce(result);
      }
    }
    this.forget(local, null);
  }

  private abort(
    local: LocalRun,
    reason: AbortReason,
    via: InterruptPath = 'signal',
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
    if (!status || status === 'running') {
      // Read the row itself: a run that starts takes the inputs merged into it meanwhile.
      const run = await this.repo.get(local.tenant, local.sessionId, local.id).catch(() => null);
      if (!run) return;
      status = run.status;
      interruptRequested = run.interruptRequestedAt !== null;
      if (local.state === 'queued') local.initialInputs = run.inputs;
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

  /** The durable path: what a lease renewal found for each run it was asked about. */
  private onLeaseReport(ids: readonly string[], rows: readonly HeartbeatRow[]): void {
    const byId = new Map(rows.map((r) => [r.id, r]));
    for (const id of ids) {
      const local = this.local.get(id);
      if (!local) continue;
      const row = byId.get(id);
      if (local.state === 'queued') {
        if (!row) this.forget(local, null);
        else void this.reconcileQueued(local, row);
        continue;
      }
      if (local.state !== 'running') continue;
      // A run launched on its promotion while the renewal was reading its row as queued: the
      // report is older than what this instance knows. (Queued with no owner: it was handed back.)
      if (row?.status === 'queued' && row.owner === this.instanceId) continue;
      if (!row || row.owner !== this.instanceId || row.status !== 'running') {
        this.abort(local, 'owner_lost');
        continue;
      }
      if (row.interruptRequested) this.abort(local, 'interrupted', 'heartbeat', undefined, row.interruptRequestedAt ?? undefined);
      if (row.sessionEnded) this.abort(local, 'session_ended');
      if (row.inputSeq > local.inputSeq) void this.pullInputs(local);
    }
  }

  /** Refuses an event a runner may not emit; returns its data's JSON text. */
  private checkEvent(event: NewOutputEvent): string {
    if (typeof event !== 'object' || event === null || typeof event.type !== 'string' || !EVENT_TYPE.test(event.type)) {
      throw new ValidationError('an output event needs a type of letters, digits and _ . : - (at most 64)', { field: 'type' });
    }
    if (SERVICE_EVENT_TYPES.includes(event.type)) {
      throw new ValidationError(`"${event.type}" is written by the service; a runner cannot emit it`, { field: 'type' });
    }
    if (event.type === GAP_EVENT_TYPE) {
      throw new ValidationError('"gap" is a reader\'s notice of pruned output; a runner cannot emit it', { field: 'type' });
    }
    return checkOutputEvent(
      { outputEventBytes: this.options.maxEventBytes, jsonDepth: this.options.jsonShape?.depth, jsonNodes: this.options.jsonShape?.nodes },
      event.data ?? null,
    );
  }
}

/** Checks usage a runner reports: each field a non-negative finite number. */
function checkUsage(usage: RunUsage): RunUsage {
  if (typeof usage !== 'object' || usage === null) throw new ValidationError('usage must be an object');
  for (const key of ['input_tokens', 'output_tokens', 'cost'] as const) {
    const v = usage[key];
    if (v !== undefined && (typeof v !== 'number' || !Number.isFinite(v) || v < 0)) {
      throw new ValidationError(`usage.${key} must be a non-negative number`, { field: key });
    }
  }
  return usage;
}

/** A returned `usage` is not checked by a throw (the run has ended): what is not a good number is left out. */
function safeUsage(usage: unknown): RunUsage {
  if (typeof usage !== 'object' || usage === null) return {};
  const u = usage as Record<string, unknown>;
  const ok = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : undefined);
  return { input_tokens: ok(u.input_tokens), output_tokens: ok(u.output_tokens), cost: ok(u.cost) };
}

function addUsage(a: RunUsage | null, b: RunUsage): RunUsage {
  const sum = (x: number | undefined, y: number | undefined) => (x === undefined && y === undefined ? undefined : (x ?? 0) + (y ?? 0));
  return { input_tokens: sum(a?.input_tokens, b.input_tokens), output_tokens: sum(a?.output_tokens, b.output_tokens), cost: sum(a?.cost, b.cost) };
}

/** Marks a promise as handled (a caller that ignores it causes no unhandled rejection) and returns it. */
function handled<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => undefined);
  return promise;
}
