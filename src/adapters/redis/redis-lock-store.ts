/**
 * Session leases in Redis: SET NX PX with a random token, renewed and released by Lua scripts
 * that act only for the token's holder. The fencing token comes from PostgreSQL
 * (sessions.fence), so it keeps increasing across Redis restarts. While Redis is unreachable
 * the PostgreSQL lease takes over; during the switch two holders can overlap, which the
 * fencing token makes harmless (locks are for efficiency, never for correctness).
 */
import { sessionKey } from '../../core/ids.js';
import { randomUUID } from 'node:crypto';
import type { SessionLease, SessionLockStore } from '../../core/ports.js';
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
