/**
 * Per-key request and connection limits. The ports are narrow so the same HTTP hooks work
 * over Redis (shared by every instance) and in-process (embedded mode, PostgreSQL-only
 * mode, and the fallback while Redis is unreachable).
 */
import { OldestFirst } from './oldest-first.js';

export interface RateLimitDecision {
  allowed: boolean;
  /** Requests allowed per window. */
  limit: number;
  /** Requests left in the current window (0 when refused). */
  remaining: number;
  /** Milliseconds until the current window ends. */
  resetMs: number;
  /** Where the decision was made: shared by all instances, or this process only. */
  scope: 'shared' | 'local';
}

/** Fixed-window counter per key; a window starts at the key's first request. */
export interface RateLimiter {
  readonly limit: number;
  readonly windowMs: number;
  consume(key: string, opts?: { signal?: AbortSignal }): Promise<RateLimitDecision>;
}

/** A held connection slot; release it when the connection ends (idempotent). */
export interface ConnectionSlot {
  release(): void;
}

/** Counts long-lived connections (SSE) per key; `acquire` resolves to null when the key is at its limit. */
export interface ConnectionLimiter {
  readonly limit: number;
  acquire(key: string, opts?: { signal?: AbortSignal }): Promise<ConnectionSlot | null>;
  /** Slots this process holds now, over all keys. */
  held(): number;
}

export interface Clock {
  now(): number;
}

const systemClock: Clock = { now: () => Date.now() };

/** One process's fixed windows. Memory is bounded by the keys active in the last window. */
/** Most keys one in-process limiter tracks at once. */
const MAX_TRACKED_KEYS = 100_000;

export class InProcessRateLimiter implements RateLimiter {
  private readonly windows = new Map<string, { count: number; resetAt: number }>();
  /** The eviction's place in `windows` (one kept iterator). */
  private readonly oldest = new OldestFirst(() => this.windows.keys());
  private lastSweep = 0;

  constructor(
    readonly limit: number,
    readonly windowMs: number = 60_000,
    private readonly clock: Clock = systemClock,
    /** Most keys tracked at once (default 100,000). */
    private readonly maxKeys: number = MAX_TRACKED_KEYS,
  ) {}

  async consume(key: string): Promise<RateLimitDecision> {
    return this.consumeNow(key);
  }

  consumeNow(key: string): RateLimitDecision {
    const now = this.clock.now();
    this.sweep(now);
    let w = this.windows.get(key);
    if (!w || w.resetAt <= now) {
      // Bounded: a flood of distinct keys (addresses) evicts the oldest windows first.
      if (!w && this.windows.size >= this.maxKeys) {
        const oldest = this.oldest.take();
        if (oldest !== undefined) this.windows.delete(oldest);
      }
      w = { count: 0, resetAt: now + this.windowMs };
      this.windows.delete(key);
      this.windows.set(key, w);
    }
    w.count += 1;
    const allowed = w.count <= this.limit;
    return { allowed, limit: this.limit, remaining: Math.max(0, this.limit - w.count), resetMs: w.resetAt - now, scope: 'local' };
  }

  private sweep(now: number): void {
    if (now - this.lastSweep < this.windowMs) return;
    this.lastSweep = now;
    for (const [key, w] of this.windows) if (w.resetAt <= now) this.windows.delete(key);
  }
}

/** One process's connection counts. */
export class InProcessConnectionLimiter implements ConnectionLimiter {
  private readonly counts = new Map<string, number>();

  constructor(readonly limit: number) {}

  async acquire(key: string): Promise<ConnectionSlot | null> {
    return this.acquireNow(key);
  }

  acquireNow(key: string): ConnectionSlot | null {
    const n = this.counts.get(key) ?? 0;
    if (n >= this.limit) return null;
    this.counts.set(key, n + 1);
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        const left = (this.counts.get(key) ?? 1) - 1;
        if (left <= 0) this.counts.delete(key);
        else this.counts.set(key, left);
      },
    };
  }

  held(): number {
    let total = 0;
    for (const n of this.counts.values()) total += n;
    return total;
  }
}
