/**
 * Per-key request and connection limits shared by every instance through Redis. They fail
 * open: when Redis cannot answer (down, slow, restarting) the decision is made by this
 * process's own counters, and a breaker keeps a dead Redis from adding its timeout to
 * every request. While it is open, N instances allow up to N times the limit.
 */
import { randomUUID } from 'node:crypto';
import {
  InProcessConnectionLimiter,
  InProcessRateLimiter,
  type ConnectionLimiter,
  type ConnectionSlot,
  type RateLimitDecision,
  type RateLimiter,
} from '../../core/rate-limit.js';
import type { RedisConnection, RedisKeys } from './connection.js';
import { LuaScript, redisUsable, withTimeout } from './lua-script.js';

const RATE_LIMIT = LuaScript.load('rate-limit-1');
const CONNECTION_SLOT = LuaScript.load('connection-slot-1');

export interface RedisLimiterOptions {
  /** Longest wait for Redis before deciding locally (default 250 ms). */
  timeoutMs?: number;
  /** How long to decide locally after a Redis failure before trying it again (default 5 s). */
  breakerMs?: number;
  /** Told about each Redis failure that opened the breaker. */
  onError?: (err: unknown) => void;
}

class Breaker {
  private openUntil = 0;
  constructor(
    private readonly redis: RedisConnection,
    private readonly ms: number,
    private readonly onError: (err: unknown) => void,
  ) {}

  closed(): boolean {
    return Date.now() >= this.openUntil && redisUsable(this.redis);
  }

  trip(err: unknown): void {
    this.openUntil = Date.now() + this.ms;
    this.onError(err);
  }
}

export class RedisRateLimiter implements RateLimiter {
  private readonly local: InProcessRateLimiter;
  private readonly breaker: Breaker;
  private readonly timeoutMs: number;

  constructor(
    private readonly redis: RedisConnection,
    private readonly keys: RedisKeys,
    readonly limit: number,
    readonly windowMs: number = 60_000,
    options: RedisLimiterOptions = {},
  ) {
    this.local = new InProcessRateLimiter(limit, windowMs);
    this.breaker = new Breaker(redis, options.breakerMs ?? 5_000, options.onError ?? (() => undefined));
    this.timeoutMs = options.timeoutMs ?? 250;
  }

  async consume(key: string): Promise<RateLimitDecision> {
    if (!this.breaker.closed()) return this.local.consumeNow(key);
    try {
      const reply = (await withTimeout(
        RATE_LIMIT.run(this.redis, [this.keys.global(`rl:{${key}}`)], [String(this.windowMs)]),
        this.timeoutMs,
      )) as [number, number];
      const count = Number(reply[0]);
      return {
        allowed: count <= this.limit,
        limit: this.limit,
        remaining: Math.max(0, this.limit - count),
        resetMs: Math.max(0, Number(reply[1])),
        scope: 'shared',
      };
    } catch (err) {
      this.breaker.trip(err);
      return this.local.consumeNow(key);
    }
  }
}

export class RedisConnectionLimiter implements ConnectionLimiter {
  private readonly local: InProcessConnectionLimiter;
  private readonly breaker: Breaker;
  private readonly timeoutMs: number;
  private readonly slots = new Set<string>();

  constructor(
    private readonly redis: RedisConnection,
    private readonly keys: RedisKeys,
    readonly limit: number,
    /** How long a slot survives its instance dying; renewed every third of it. */
    private readonly leaseMs: number = 30_000,
    options: RedisLimiterOptions = {},
  ) {
    this.local = new InProcessConnectionLimiter(limit);
    this.breaker = new Breaker(redis, options.breakerMs ?? 5_000, options.onError ?? (() => undefined));
    this.timeoutMs = options.timeoutMs ?? 250;
  }

  held(): number {
    return this.slots.size + this.local.held();
  }

  async acquire(key: string): Promise<ConnectionSlot | null> {
    if (!this.breaker.closed()) return this.local.acquireNow(key);
    const redisKey = this.keys.global(`conn:{${key}}`);
    const slotId = randomUUID();
    let held: unknown;
    try {
      held = await withTimeout(this.take(redisKey, slotId), this.timeoutMs);
    } catch (err) {
      this.breaker.trip(err);
      return this.local.acquireNow(key);
    }
    if (Number(held) !== 1) return null;
    this.slots.add(slotId);
    // Renewal failures are left alone: the slot then lapses, which only ever frees capacity.
    const renew = setInterval(() => void this.take(redisKey, slotId).catch(() => undefined), Math.max(1_000, this.leaseMs / 3));
    renew.unref();
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        clearInterval(renew);
        this.slots.delete(slotId);
        void this.redis.zRem(redisKey, slotId).catch(() => undefined);
      },
    };
  }

  private take(redisKey: string, slotId: string): Promise<unknown> {
    return CONNECTION_SLOT.run(this.redis, [redisKey], [slotId, String(this.limit), String(this.leaseMs)]);
  }
}
