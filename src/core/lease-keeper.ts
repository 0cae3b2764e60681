/**
 * The heartbeat of this instance's runs: every `intervalMs` it renews the leases of the runs
 * this instance holds (running and queued) and reports what the database holds for each. The
 * report is the durable path of every signal: an interrupt flag, input waiting, a queued run
 * promoted, a run that is no longer this instance's. A lapsed lease is what the orphan sweep
 * looks for, so renewing in time is what keeps a run alive.
 */
import type { HeartbeatRow, RunRepository } from './runs.js';

export interface LeaseKeeperOptions {
  repository: Pick<RunRepository, 'heartbeat'>;
  /** This instance's id: the owner whose leases are renewed. */
  owner: string;
  leaseMs: number;
  /** Time between renewals; a third of the lease leaves two renewals' slack. */
  intervalMs: number;
  /** The runs whose leases this instance holds now. */
  held: () => string[];
  /** What one renewal found: a row per run that still exists (a run missing from `rows` is gone). */
  report: (ids: readonly string[], rows: readonly HeartbeatRow[]) => void;
  /** A renewal failed; the next one tries again. */
  onError?: (err: unknown) => void;
}

export class LeaseKeeper {
  private timer: NodeJS.Timeout | null = null;
  private renewing: Promise<void> | null = null;

  constructor(private readonly options: LeaseKeeperOptions) {}

  /** Starts renewing. Idempotent. */
  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.renew(), this.options.intervalMs);
    this.timer.unref();
  }

  /** Stops renewing and waits for a renewal in flight. Idempotent. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.renewing;
  }

  /** Renews now; a call while a renewal is in flight shares it. Never rejects. */
  renew(): Promise<void> {
    this.renewing ??= this.renewOnce()
      .catch((err: unknown) => this.options.onError?.(err))
      .finally(() => {
        this.renewing = null;
      });
    return this.renewing;
  }

  private async renewOnce(): Promise<void> {
    const ids = this.options.held();
    if (ids.length === 0) return;
    const rows = await this.options.repository.heartbeat(this.options.owner, ids, this.options.leaseMs);
    this.options.report(ids, rows);
  }
}
