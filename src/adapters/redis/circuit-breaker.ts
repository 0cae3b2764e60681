/**
 * A circuit breaker for Redis. Closed: calls go through and consecutive failures are
 * counted. Open: calls fail at once (no connect or command timeout is paid) until a cooldown
 * has passed; then one background recovery runs: a probe ('recovering': every call still
 * fails fast), then the caller's `recover`, e.g. repairing entries that missed writes
 * ('draining': writes go through again, so no new write misses Redis, but reads still fail
 * fast because the repair is not finished). Only when that succeeds does the breaker close.
 * A caller never waits for a recovery.
 */

export type BreakerState = 'closed' | 'open' | 'recovering' | 'draining';

/** Reads may serve data; writes only ever replace older data (version-guarded). */
export type CallKind = 'read' | 'write';

export class BreakerOpenError extends Error {
  override name = 'BreakerOpenError';
  constructor(what: string) {
    super(`${what} is unavailable (circuit open)`);
  }
}

export interface CircuitBreakerOptions {
  name: string;
  /** Consecutive failures that open the breaker (default 3). */
  failureThreshold?: number;
  /** Wait after opening before the first recovery attempt (default 500 ms); doubles up to maxCooldownMs. */
  cooldownMs?: number;
  maxCooldownMs?: number;
  /** Checks the dependency answers (e.g. a PING). */
  probe: () => Promise<void>;
  /** Runs after a successful probe, before the breaker closes. */
  recover?: () => Promise<void>;
  onStateChange?: (state: BreakerState, cause?: unknown) => void;
  now?: () => number;
  /**
   * Start open: nothing passes until a first `recover()` (the start's checks) closes it. Not an
   * opening: no state change is reported, so a healthy start reports only its closing.
   */
  startOpen?: boolean;
}

export class CircuitBreaker {
  private current: BreakerState = 'closed';
  private failures = 0;
  private openedAt = 0;
  private cooldown: number;
  private recovering: Promise<boolean> | null = null;
  private trips = 0;
  private readonly threshold: number;
  private readonly baseCooldown: number;
  private readonly maxCooldown: number;
  private readonly now: () => number;
  /** Calls rejected without touching the dependency, for metrics. */
  shortCircuited = 0;
  /** Times the breaker opened (from closed, or again after a failed recovery), for metrics. */
  openings = 0;

  constructor(private readonly options: CircuitBreakerOptions) {
    this.threshold = options.failureThreshold ?? 3;
    this.baseCooldown = options.cooldownMs ?? 500;
    this.cooldown = this.baseCooldown;
    this.maxCooldown = options.maxCooldownMs ?? 5_000;
    this.now = options.now ?? Date.now;
    if (options.startOpen) {
      this.current = 'open';
      // No recovery from a call before the start's own: its cooldown begins now.
      this.openedAt = this.now();
    }
  }

  get state(): BreakerState {
    return this.current;
  }

  get isClosed(): boolean {
    return this.current === 'closed';
  }

  /**
   * Runs `fn` through the breaker; fails fast with BreakerOpenError while it is open. While
   * closed (every cache read) the result is `fn`'s promise with one callback, no async frame.
   */
  run<T>(fn: () => Promise<T>, kind: CallKind = 'read'): Promise<T> {
    if (this.current === 'closed') {
      let pending: Promise<T>;
      try {
        pending = fn();
      } catch (err) {
        this.failure(err);
        return Promise.reject(err as Error);
      }
      return pending.then(
        (result) => {
          this.failures = 0;
          return result;
        },
        (err: unknown) => {
          this.failure(err);
          throw err;
        },
      );
    }
    return this.runNotClosed(fn, kind);
  }

  private async runNotClosed<T>(fn: () => Promise<T>, kind: CallKind): Promise<T> {
    if (this.current === 'draining' && kind === 'write') {
      try {
        return await fn();
      } catch (err) {
        this.trip(err);
        throw err;
      }
    }
    this.shortCircuited++;
    if (this.current === 'open' && this.now() - this.openedAt >= this.cooldown) void this.recover();
    throw new BreakerOpenError(this.options.name);
  }

  /** Counts a call that succeeded outside `run` (a closed breaker's fast path). */
  success(): void {
    this.failures = 0;
  }

  /** Counts a failure observed outside `run`. */
  failure(cause: unknown): void {
    if (this.current !== 'closed') return;
    if (++this.failures >= this.threshold) this.trip(cause);
  }

  /** Opens at once (the connection reported an error). */
  trip(cause?: unknown): void {
    this.trips++;
    if (this.current === 'open') return;
    const wasClosed = this.current === 'closed';
    this.current = 'open';
    this.openings++;
    this.openedAt = this.now();
    if (wasClosed) this.cooldown = this.baseCooldown;
    this.options.onStateChange?.('open', cause);
  }

  /**
   * Tries to close: probe, then `recover`. Shared by concurrent callers; resolves to whether
   * the breaker is closed afterwards.
   */
  recover(): Promise<boolean> {
    if (this.current === 'closed') return Promise.resolve(true);
    this.recovering ??= (async () => {
      const trips = this.trips;
      this.current = 'recovering';
      this.options.onStateChange?.('recovering');
      try {
        await this.options.probe();
        this.current = 'draining';
        this.options.onStateChange?.('draining');
        await this.options.recover?.();
        // The connection failed again while we were recovering: what we repaired may be gone.
        if (this.trips !== trips) throw new Error(`${this.options.name} failed during recovery`);
        this.current = 'closed';
        this.failures = 0;
        this.cooldown = this.baseCooldown;
        this.options.onStateChange?.('closed');
        return true;
      } catch (err) {
        this.current = 'open';
        this.openings++;
        this.openedAt = this.now();
        this.cooldown = Math.min(this.cooldown * 2, this.maxCooldown);
        this.options.onStateChange?.('open', err);
        return false;
      } finally {
        this.recovering = null;
      }
    })();
    return this.recovering;
  }
}
