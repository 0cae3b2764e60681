/**
 * Workers (SPEC §7.1): the agents this instance serves, each with a runner and a concurrency
 * limit. A run of an agent (`runs.start(id, { agent })`) starts where it was asked for when that
 * instance serves the agent and has a free slot; otherwise it is queued unowned, and a worker of
 * any instance claims it (SKIP LOCKED, so never two) as soon as it is startable.
 *
 * Wake-ups have a fast path (a `claimable` signal to every instance serving the agent, through
 * the SignalBus, or a direct call here) and a durable one: each worker looks for claimable runs
 * every `claimIntervalMs`, so a lost wake-up delays a run, never strands it.
 */
import { AsyncResource } from 'node:async_hooks';
import type { RunExecutor, RunLogger } from './run-executor.js';
import { workersAddress, type RunRepository, type Runner, type ServeHandle, type ServeOptions, type SignalBus } from './runs.js';

export interface RunWorkersOptions {
  repository: Pick<RunRepository, 'claim'>;
  executor: RunExecutor;
  bus: SignalBus;
  leaseMs: number;
  /** How often each worker looks for claimable runs without being woken (default 1000). */
  claimIntervalMs?: number;
  logger?: RunLogger;
}

/** A slot a run holds on a worker of this instance; `release` gives it back (once). */
export interface WorkerSlot {
  runner: Runner;
  takesInput: boolean;
  release(): void;
}

class AgentWorker {
  active = 0;
  stopped = false;
  timer: NodeJS.Timeout | null = null;
  unsubscribe: (() => Promise<void>) | null = null;
  /** The claim pass in flight; another wake-up meanwhile asks for one more pass after it. */
  pass: Promise<void> | null = null;
  again = false;
  /** Resolved when the worker has stopped and its last run here ended. */
  idle: (() => void) | null = null;

  constructor(
    readonly agent: string,
    readonly runner: Runner,
    readonly concurrency: number,
    readonly takesInput: boolean,
  ) {}

  get free(): number {
    return this.stopped ? 0 : Math.max(0, this.concurrency - this.active);
  }
}

const AGENT_NAME = /^[A-Za-z0-9][\w.:-]{0,63}$/;

/** Whether `name` is a valid agent name (1–64 letters, digits and `_ . : -`, starting with a letter or digit). */
export function isAgentName(name: unknown): name is string {
  return typeof name === 'string' && AGENT_NAME.test(name);
}

export class RunWorkers {
  private readonly options: RunWorkersOptions;
  private readonly workers = new Map<string, AgentWorker>();
  private readonly claimIntervalMs: number;
  private stopping = false;

  constructor(options: RunWorkersOptions) {
    this.options = options;
    this.claimIntervalMs = options.claimIntervalMs ?? 1_000;
  }

  /** The agents served here. */
  get agents(): string[] {
    return [...this.workers.values()].filter((w) => !w.stopped).map((w) => w.agent);
  }

  /** Serves `agent` with `runner` here: claims its runs as they become startable, at most `concurrency` at once. */
  serve(agent: string, runner: Runner, opts: ServeOptions = {}): ServeHandle {
    if (!isAgentName(agent)) throw new TypeError('an agent name is 1 to 64 letters, digits and _ . : - (starting with a letter or digit)');
    if (typeof runner !== 'function') throw new TypeError('a runner function is required');
    const concurrency = opts.concurrency ?? 1;
    if (!Number.isSafeInteger(concurrency) || concurrency < 1) throw new TypeError('concurrency must be a positive integer');
    if (this.stopping) throw new Error('this instance is shutting down');
    const existing = this.workers.get(agent);
    if (existing && !existing.stopped) throw new Error(`agent ${agent} is already served here`);
    const worker = new AgentWorker(agent, runner, concurrency, opts.takesInput ?? runner.takesInput ?? false);
    this.workers.set(agent, worker);
    void this.options.bus
      .subscribe(workersAddress(agent), (signal) => {
        if (signal.type === 'claimable' && signal.agent === agent) this.wakeLocal(worker);
      })
      .then(
        (unsubscribe) => {
          if (worker.stopped) void unsubscribe();
          else worker.unsubscribe = unsubscribe;
        },
        (err: unknown) => this.options.logger?.warn({ err, agent }, 'worker wake-ups unavailable; claiming by polling'),
      );
    this.schedule(worker);
    this.wakeLocal(worker);
    let stopping: Promise<void> | null = null;
    return {
      agent,
      stop: () => (stopping ??= this.stopWorker(worker)),
    };
  }

  /**
   * Takes a slot for a run of `agent` that this instance starts now (admission); null when the
   * agent is not served here or its slots are all taken (the run is then queued for a worker).
   */
  reserve(agent: string): WorkerSlot | null {
    const worker = this.workers.get(agent);
    if (!worker || worker.free === 0 || this.stopping) return null;
    worker.active++;
    return { runner: worker.runner, takesInput: worker.takesInput, release: this.releaser(worker) };
  }

  /** Tells every worker of `agent` (here and elsewhere) that a run may be claimable. */
  wake(agent: string, ref: { sessionId: string; runId: string } = { sessionId: '', runId: '' }): void {
    const worker = this.workers.get(agent);
    if (worker && !worker.stopped) this.wakeLocal(worker);
    void this.options.bus
      .publish(workersAddress(agent), { type: 'claimable', agent, sessionId: ref.sessionId, runId: ref.runId })
      .catch((err: unknown) => this.options.logger?.warn({ err, agent }, 'worker wake-up not published; workers find the run by polling'));
  }

  /** Stops claiming on every worker (the drain's first step); runs executing here go on. Idempotent. */
  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all([...this.workers.values()].map((w) => this.halt(w)));
  }

  private async stopWorker(worker: AgentWorker): Promise<void> {
    await this.halt(worker);
    if (worker.active > 0) await new Promise<void>((resolve) => (worker.idle = resolve));
    if (this.workers.get(worker.agent) === worker) this.workers.delete(worker.agent);
  }

  private async halt(worker: AgentWorker): Promise<void> {
    worker.stopped = true;
    if (worker.timer) clearTimeout(worker.timer);
    worker.timer = null;
    await worker.pass?.catch(() => undefined);
    await worker.unsubscribe?.().catch(() => undefined);
    worker.unsubscribe = null;
  }

  private releaser(worker: AgentWorker): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      worker.active--;
      if (worker.stopped) {
        if (worker.active === 0) worker.idle?.();
      } else {
        // A slot is free: there may be a run waiting for one.
        this.wakeLocal(worker);
      }
    };
  }

  private schedule(worker: AgentWorker): void {
    if (worker.stopped) return;
    // Jitter spreads the instances' polls.
    worker.timer = setTimeout(() => {
      this.wakeLocal(worker);
      this.schedule(worker);
    }, this.claimIntervalMs * (0.75 + Math.random() * 0.5));
    worker.timer.unref();
  }

  private wakeLocal(worker: AgentWorker): void {
    if (worker.stopped) return;
    if (worker.pass) {
      worker.again = true;
      return;
    }
    detached(() => {
      worker.pass = (async () => {
        do {
          worker.again = false;
          await this.claimPass(worker);
        } while (worker.again && !worker.stopped);
      })().finally(() => {
        worker.pass = null;
      });
    });
  }

  /**
   * Claims runs one at a time, each in a slot taken before its claim, so an admission here
   * meanwhile finds every other slot free (and none is ever overbooked).
   */
  private async claimPass(worker: AgentWorker): Promise<void> {
    while (worker.free > 0 && this.options.executor.accepting) {
      worker.active++;
      let adopted = false;
      try {
        const result = await this.options.repository.claim(this.options.executor.instanceId, worker.agent, 1, this.options.leaseMs, worker.takesInput);
        for (const ended of result.ended) await this.options.executor.announce(ended);
        const c = result.claimed[0];
        if (!c) {
          if (result.ended.length === 0) break;
          continue;
        }
        await this.options.executor.publish(c.run.tenantId, c.run.sessionId, c.events);
        adopted = true;
        await this.options.executor.adopt(c.run, worker.runner, c.session, this.releaser(worker));
      } catch (err) {
        this.options.logger?.warn({ err, agent: worker.agent }, 'claim failed; retried at the next poll');
        break;
      } finally {
        if (!adopted) this.releaseQuietly(worker);
      }
    }
  }

  /** Gives back a slot a claim took and did not use (no wake-up: the pass is ending or goes on). */
  private releaseQuietly(worker: AgentWorker): void {
    worker.active--;
    if (worker.stopped && worker.active === 0) worker.idle?.();
  }
}

/**
 * Runs `fn` in the context this module was loaded in, never in a caller's: a slot freed inside
 * a request's idempotent transaction (commit-effects.ts, the ambient transaction of the
 * PostgreSQL adapter) must not pull the claim pass it starts into that transaction. A claim
 * commits on its own connection, and its effects are its own.
 */
const detached = AsyncResource.bind((fn: () => void): void => fn());
