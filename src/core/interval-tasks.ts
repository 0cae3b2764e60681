/**
 * Background tasks run on an interval on every instance. Each task must be safe to run on
 * several instances at once (claim rows with SKIP LOCKED). A task that is still running
 * when its next turn comes is not started twice.
 */
import type { Lifecycle } from './ports.js';

export interface SweepTask {
  readonly name: string;
  /** Does one round of work; resolves to the number of things it changed. `signal` fires when the scheduler stops. */
  run(signal?: AbortSignal): Promise<number>;
}

export interface IntervalTasksOptions {
  intervalMs: number;
  onError?: (task: string, err: unknown) => void;
  onDone?: (task: string, changed: number) => void;
}

export class IntervalTasks implements Lifecycle {
  private timer: NodeJS.Timeout | null = null;
  private readonly running = new Map<string, Promise<void>>();

  constructor(
    private readonly tasks: readonly SweepTask[],
    private readonly options: IntervalTasksOptions,
  ) {}

  async ready(): Promise<void> {
    this.timer ??= setInterval(() => this.tick(), this.options.intervalMs);
    this.timer.unref();
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await Promise.allSettled(this.running.values());
  }

  /** Runs every task once now (tests, and the first round at start). */
  async runOnce(): Promise<void> {
    this.tick();
    await Promise.allSettled(this.running.values());
  }

  private tick(): void {
    for (const task of this.tasks) {
      if (this.running.has(task.name)) continue;
      const p = task
        .run()
        .then((changed) => this.options.onDone?.(task.name, changed))
        .catch((err: unknown) => this.options.onError?.(task.name, err))
        .finally(() => this.running.delete(task.name));
      this.running.set(task.name, p);
    }
  }
}

/** The orphaned-run sweep as a task, for this scheduler or any other sweeper. */
export function orphanedRunsTask(runs: { sweepOrphans(limit?: number): Promise<number> }): SweepTask {
  return { name: 'orphaned-runs', run: () => runs.sweepOrphans() };
}
