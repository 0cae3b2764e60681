/**
 * Session leases in PostgreSQL (embedded and PostgreSQL-only modes, and the fallback while
 * Redis is unreachable), and the fencing token every lock store hands out: `sessions.fence`,
 * bumped in the same database that checks it on writes, so it increases strictly per
 * session whatever happens to Redis.
 */
import { randomUUID } from 'node:crypto';
import { NotFoundError } from '../../core/errors.js';
import type { SessionLease, SessionLockStore } from '../../core/ports.js';
import type { SqlDatabase } from './database.js';
import { run, statements } from './sql.js';

const SQL = statements('sessionFenceNext', 'sessionLockAcquire', 'sessionLockRenew', 'sessionLockRelease');

/** The next fencing token of a session, with the session's version committed at that moment. */
export async function nextFence(db: SqlDatabase, tenant: string, sessionId: string): Promise<{ fence: number; version: number }> {
  const [row] = await run<{ fence: number | string; version: number | string }>(db, SQL.sessionFenceNext, { id: sessionId, tenant });
  if (!row) throw new NotFoundError('session', sessionId);
  return { fence: Number(row.fence), version: Number(row.version) };
}

export class PostgresSessionLockStore implements SessionLockStore {
  readonly kind = 'postgres';

  constructor(private readonly db: SqlDatabase) {}

  async tryAcquire(tenant: string, sessionId: string, ttlMs: number): Promise<SessionLease | null> {
    const token = randomUUID();
    // One statement: take the lease if it is free or lapsed, and bump the fence only if taken.
    type Acquired = { found: boolean; fence: number | string | null; version: number | string | null };
    const [row] = await run<Acquired>(this.db, SQL.sessionLockAcquire, {
      sessionId,
      tenant,
      token,
      ttlMs,
    });
    if (!row?.found) throw new NotFoundError('session', sessionId);
    if (row.fence === null) return null;
    return {
      fencingToken: Number(row.fence),
      sessionVersion: Number(row.version),
      // A lapsed lease is lost even if nobody has taken it yet, as with a Redis key that expired.
      renew: async (ms) => {
        const renewed = await run(this.db, SQL.sessionLockRenew, { sessionId, token, ttlMs: ms, tenant });
        return renewed.length === 1;
      },
      release: async () => {
        await run(this.db, SQL.sessionLockRelease, { sessionId, token, tenant });
      },
    };
  }
}
