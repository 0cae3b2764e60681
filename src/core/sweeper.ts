/**
 * Background sweeps (SPEC §9). Every instance runs the same list of tasks on an interval;
 * each task claims its rows with SKIP LOCKED, so N instances share the work without repeating
 * it and none is a single point of failure. Other features add their own tasks with `add`; the
 * finalization of orphaned runs has a sweeper of its own (a shorter interval).
 */
import { finalizeOrphanedRuns, type OrphanSweepOptions } from './orphan-sweep.js';
import type { SessionRef, SweepStore } from './ports.js';

/** One kind of background work. It must be safe to run on several instances at once. */
export interface SweepTask {
  readonly name: string;
  /** Does one round of work; resolves to the number of things it changed. `signal` fires when the sweeper stops. */
  run(signal?: AbortSignal): Promise<number>;
}

export interface SweepTaskStats {
  passes: number;
  /** Rows acted on since start (sessions expired, rows purged, ...). */
  affected: number;
  errors: number;
  lastRunAt: string | null;
  lastError: string | null;
}

export interface SweeperOptions {
  tasks?: SweepTask[];
  /** Time between passes (ms); 0 disables the timer (passes run only through `runOnce`). */
  intervalMs: number;
  onError?: (err: unknown, task: string) => void;
}

export class Sweeper {
  private readonly tasks: SweepTask[];
  private readonly intervalMs: number;
  private readonly onError: (err: unknown, task: string) => void;
  private readonly counters = new Map<string, SweepTaskStats>();
  private timer: NodeJS.Timeout | null = null;
  private controller = new AbortController();
  private pass: Promise<Record<string, number>> | null = null;
  private started = false;

  constructor(options: SweeperOptions) {
    this.tasks = [...(options.tasks ?? [])];
    this.intervalMs = options.intervalMs;
    this.onError = options.onError ?? (() => undefined);
    for (const t of this.tasks) this.counters.set(t.name, emptyStats());
  }

  /** Adds a task to every later pass. */
  add(task: SweepTask): void {
    if (this.counters.has(task.name)) throw new Error(`sweep task ${task.name} already exists`);
    this.tasks.push(task);
    this.counters.set(task.name, emptyStats());
  }

  stats(): Record<string, SweepTaskStats> {
    return Object.fromEntries([...this.counters].map(([name, s]) => [name, { ...s }]));
  }

  /** Starts the timer. Idempotent. */
  start(): void {
    if (this.started || this.intervalMs <= 0) return;
    this.started = true;
    this.schedule();
  }

  /**
   * Runs every task once, in order; a failing task does not stop the others. Concurrent calls
   * share the pass in flight. Resolves to the rows each task acted on.
   */
  runOnce(): Promise<Record<string, number>> {
    this.pass ??= this.runTasks().finally(() => {
      this.pass = null;
    });
    return this.pass;
  }

  /** Stops the timer and waits for a pass in flight. Idempotent. */
  async close(): Promise<void> {
    this.started = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.controller.abort();
    await this.pass?.catch(() => undefined);
  }

  private schedule(): void {
    if (!this.started) return;
    // Jitter spreads the instances' passes so they rarely contend for the same rows.
    const delay = this.intervalMs * (0.75 + Math.random() * 0.5);
    this.timer = setTimeout(() => {
      void this.runOnce().finally(() => this.schedule());
    }, delay);
    this.timer.unref();
  }

  private async runTasks(): Promise<Record<string, number>> {
    const done: Record<string, number> = {};
    for (const task of this.tasks) {
      if (this.controller.signal.aborted) break;
      const stats = this.counters.get(task.name) ?? emptyStats();
      try {
        const n = await task.run(this.controller.signal);
        stats.affected += n;
        done[task.name] = n;
        stats.lastError = null;
      } catch (err) {
        stats.errors++;
        stats.lastError = err instanceof Error ? err.message : String(err);
        this.onError(err, task.name);
      }
      stats.passes++;
      stats.lastRunAt = new Date().toISOString();
      this.counters.set(task.name, stats);
    }
    return done;
  }
}

function emptyStats(): SweepTaskStats {
  return { passes: 0, affected: 0, errors: 0, lastRunAt: null, lastError: null };
}

export interface SessionSweepOptions {
  /** Warn this many seconds before a session's deadline; 0: warn only together with the expiry. */
  warningLeadSeconds: number;
  /** Purge ended sessions this many days after they ended; 0: never. */
  retentionDays: number;
  /** Prune published events this many hours after publication; 0: never. */
  outboxRetentionHours: number;
  /** Delete the archived output of ended runs this many hours after they ended (a session's latest run keeps its own); 0: never. */
  outputRetentionHours?: number;
  /** No broker is configured here: events older than the retention are pruned unpublished. */
  pruneUnpublished: boolean;
  /** Rows per statement. */
  batchSize?: number;
  /** Most statements per task per pass, so one pass cannot run for ever. */
  maxBatches?: number;
  /** Sessions that ended (their rows stay): drop them from caches. */
  onSessionsChanged: (sessions: SessionRef[]) => Promise<void>;
  /**
   * Sessions whose rows were purged (committed): drop them from caches and drop what the lock
   * store keeps for them (SessionService.evictDeleted). Expired sessions never come here: their
   * rows, and so their lease counters, stay.
   */
  onSessionsDeleted: (sessions: SessionRef[]) => Promise<void>;
}

/** The session sweeps: timeout warnings, expiry, retention purge, outbox and output pruning. */
export function sessionSweepTasks(store: SweepStore, o: SessionSweepOptions): SweepTask[] {
  const batch = o.batchSize ?? 500;
  const maxBatches = o.maxBatches ?? 20;
  const repeat = async (signal: AbortSignal | undefined, step: () => Promise<number>): Promise<number> => {
    let total = 0;
    for (let i = 0; i < maxBatches && !signal?.aborted; i++) {
      const n = await step();
      total += n;
      if (n < batch) break;
    }
    return total;
  };
  const tasks: SweepTask[] = [];
  if (o.warningLeadSeconds > 0) {
    tasks.push({
      name: 'timeout_warnings',
      run: (signal) => repeat(signal, async () => (await store.warnExpiring(o.warningLeadSeconds, batch)).length),
    });
  }
  tasks.push(
    {
      name: 'expire_sessions',
      run: (signal) =>
        repeat(signal, async () => {
          const expired = await store.expireDue(batch);
          if (expired.length > 0) await o.onSessionsChanged(expired);
          return expired.length;
        }),
    },
  );
  if (o.retentionDays > 0) {
    tasks.push({
      name: 'purge_ended_sessions',
      run: (signal) =>
        repeat(signal, async () => {
          const purged = await store.purgeEnded(o.retentionDays, batch);
          if (purged.length > 0) await o.onSessionsDeleted(purged);
          return purged.length;
        }),
    });
  }
  if (o.outboxRetentionHours > 0) {
    tasks.push({
      name: 'prune_outbox',
      run: (signal) => repeat(signal, () => store.pruneOutbox(o.outboxRetentionHours, o.pruneUnpublished, batch)),
    });
  }
  const outputHours = o.outputRetentionHours ?? 0;
  if (outputHours > 0) {
    tasks.push({
      name: 'prune_output',
      run: (signal) => repeat(signal, () => store.pruneOutput(outputHours, batch)),
    });
  }
  return tasks;
}

/** The finalization of runs whose owner vanished (SPEC §7), as a sweep task. */
export function orphanedRunsTask(options: OrphanSweepOptions): SweepTask {
  return { name: 'finalize_orphaned_runs', run: (signal) => finalizeOrphanedRuns(options, undefined, signal) };
}
