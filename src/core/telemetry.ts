/**
 * What the core reports for metrics. The core imports no metrics library: it calls these
 * hooks at the moments only it can see (a lock wait, an interrupt reaching its run), and an
 * adapter (src/adapters/prometheus/metrics.ts) turns them into series. Counts that components
 * already keep (cache hits, relay and sweep stats) are read by the adapter when scraped
 * instead. Hooks are synchronous, cheap and must not throw.
 */

export interface SessionTelemetry {
  /** Session reads the cache did not answer, served by the repository: sessions found and not found. */
  repositoryRead(found: number, missing: number): void;
  /** `withSessionLock` got its lease after waiting `waitSeconds` (about 0 when the first attempt won). */
  lockAcquired(waitSeconds: number): void;
  /** One attempt of `withSessionLock` found the lease held by another caller. */
  lockConflict(): void;
  /** `withSessionLock` gave up with `lock_timeout` after `waitSeconds`. */
  lockTimedOut(waitSeconds: number): void;
  /** A lease was lost (renewal failed) while its function ran. */
  lockLost(): void;
}

/** How an interrupt reached the run it stopped. */
export type InterruptPath = 'signal' | 'heartbeat' | 'before_start';

export interface RunTelemetry {
  /** Runs this instance asked to stop (interrupt, or start with ifBusy 'interrupt'). */
  interruptRequested(runs: number): void;
  /**
   * An interrupt aborted a run executing on this instance (its owner). `latencySeconds`:
   * from the request to the abort, when the request time is known.
   */
  interruptDelivered(via: InterruptPath, latencySeconds: number | null): void;
  /** This instance finalized a run (it executed it, or swept it as an orphan). */
  runEnded(status: string, reason: string): void;
}

export const NO_SESSION_TELEMETRY: SessionTelemetry = Object.freeze({
  repositoryRead: () => undefined,
  lockAcquired: () => undefined,
  lockConflict: () => undefined,
  lockTimedOut: () => undefined,
  lockLost: () => undefined,
});

export const NO_RUN_TELEMETRY: RunTelemetry = Object.freeze({
  interruptRequested: () => undefined,
  interruptDelivered: () => undefined,
  runEnded: () => undefined,
});
