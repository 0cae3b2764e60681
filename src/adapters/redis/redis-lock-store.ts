/**
 * Session leases in Redis: SET NX PX with a random token, renewed and released by Lua scripts
 * that act only for the token's holder.
 *
 * - `RedisLeaseCounters` (standalone Redis): the lease script also counts the session's leases
 *   in the keyspace's lock epoch; core/fencing.ts composes the fencing token from the two and
 *   moves the epoch (in PostgreSQL) when Redis lost it. No PostgreSQL write per lease.
 * - `RedisSessionLockStore` (Cluster: the epoch key cannot share a slot with every session):
 *   the fencing token comes from PostgreSQL (sessions.fence, one UPDATE per lease).
 *
 * While Redis is unreachable the PostgreSQL lease takes over; during the switch two holders
 * can overlap, which the fencing token makes harmless (locks are for efficiency, never for
 * correctness).
 */
import { sessionKey } from '../../core/ids.js';
import { randomUUID } from 'node:crypto';
import type { CountedAcquire, LeaseCounterStore, SessionLease, SessionLockStore } from '../../core/ports.js';
import { BreakerOpenError } from './circuit-breaker.js';
import type { GuardedRedis } from './guarded-redis.js';
import { SCRIPTS } from './session-scripts.js';

export interface RedisSessionLockStoreOptions {
  redis: GuardedRedis;
  /** The next fencing token of a session and its committed version (PostgreSQL); throws session_not_found. */
  nextFence: (tenant: string, sessionId: string) => Promise<{ fence: number; version: number }>;
  /** Used while Redis is unreachable. */
  fallback: SessionLockStore;
}

export class RedisSessionLockStore implements SessionLockStore {
  readonly kind = 'redis';

  constructor(private readonly options: RedisSessionLockStoreOptions) {}

  async tryAcquire(tenant: string, sessionId: string, ttlMs: number): Promise<SessionLease | null> {
    const { redis } = this.options;
    const key = redis.keys.sessionPart(sessionKey(tenant, sessionId), 'lock');
    const token = randomUUID();
    let acquired: string | null;
    try {
      acquired = await redis.run((r) => r.set(key, token, { condition: 'NX', expiration: { type: 'PX', value: ttlMs } }));
    } catch (err) {
      if (err instanceof BreakerOpenError || !redis.breaker.isClosed) {
        return this.options.fallback.tryAcquire(tenant, sessionId, ttlMs);
      }
      throw err;
    }
    if (acquired !== 'OK') return null;
    const release = async () => {
      await redis.run((r) => SCRIPTS.lockRelease.run(r, [key], [token])).catch(() => undefined);
    };
    let fenced: { fence: number; version: number };
    try {
      fenced = await this.options.nextFence(tenant, sessionId);
    } catch (err) {
      await release();
      throw err;
    }
    return {
      fencingToken: fenced.fence,
      sessionVersion: fenced.version,
      renew: async (ms) => Number(await redis.run((r) => SCRIPTS.lockExtend.run(r, [key], [token, String(ms)]))) === 1,
      release,
    };
  }
}

/** Leases with per-session counters in the keyspace's lock epoch (standalone Redis only). */
export class RedisLeaseCounters implements LeaseCounterStore {
  constructor(private readonly redis: GuardedRedis) {
    if (redis.cluster) throw new Error('RedisLeaseCounters needs a standalone Redis (its scripts name a global key)');
  }

  private get epochKey(): string {
    return this.redis.keys.global('lock-epoch');
  }

  async tryAcquire(tenant: string, sessionId: string, ttlMs: number): Promise<CountedAcquire> {
    const { redis } = this;
    const key = sessionKey(tenant, sessionId);
    const lockKey = redis.keys.sessionPart(key, 'lock');
    const counterKey = redis.keys.sessionPart(key, 'fence');
    const token = randomUUID();
    let reply: unknown;
    try {
      reply = await redis.run((r) => SCRIPTS.lockAcquire.run(r, [lockKey, counterKey, this.epochKey], [token, String(ttlMs)]));
    } catch (err) {
      if (err instanceof BreakerOpenError || !redis.breaker.isClosed) return { outcome: 'unavailable' };
      throw err;
    }
    const [state, epoch, counter] = (reply as unknown[]).map(Number);
    if (state === -1) return { outcome: 'no_epoch' };
    if (state !== 1) return { outcome: 'held' };
    return {
      outcome: 'taken',
      lease: {
        epoch: epoch as number,
        counter: counter as number,
        renew: async (ms) => Number(await redis.run((r) => SCRIPTS.lockExtend.run(r, [lockKey], [token, String(ms)]))) === 1,
        release: async () => {
          await redis.run((r) => SCRIPTS.lockRelease.run(r, [lockKey], [token])).catch(() => undefined);
        },
        discard: async () => {
          const args = [token, String(epoch), String(counter)];
          await redis.run((r) => SCRIPTS.lockForget.run(r, [lockKey, counterKey], args)).catch(() => undefined);
        },
      },
    };
  }

  async installEpoch(epoch: number): Promise<void> {
    try {
      await this.redis.run((r) => SCRIPTS.lockEpoch.run(r, [this.epochKey], [String(epoch)]));
    } catch (err) {
      // The next lease attempt finds the circuit open (PostgreSQL lease) or no epoch (moves again).
      if (err instanceof BreakerOpenError || !this.redis.breaker.isClosed) return;
      throw err;
    }
  }

  async lastCounter(tenant: string, sessionId: string): Promise<{ epoch: number; counter: number } | null> {
    const counterKey = this.redis.keys.sessionPart(sessionKey(tenant, sessionId), 'fence');
    let fields: (string | null)[];
    try {
      fields = (await this.redis.run((r) => r.hmGet(counterKey, ['e', 'n']))) as (string | null)[];
    } catch {
      // Unknown: the write is checked against the session row only, as while Redis is down.
      return null;
    }
    const [e, n] = fields;
    return e && n ? { epoch: Number(e), counter: Number(n) } : null;
  }

  async forget(tenant: string, sessionId: string): Promise<void> {
    const counterKey = this.redis.keys.sessionPart(sessionKey(tenant, sessionId), 'fence');
    await this.redis.run((r) => r.unlink(counterKey));
  }
}
