/**
 * Session leases in PostgreSQL (embedded and PostgreSQL-only modes, and the fallback while
 * Redis is unreachable), the fencing token they hand out (`sessions.fence`, bumped in the
 * same database that checks it on writes), and the durable side of Redis leases: the lock
 * epoch and the read a Redis lease makes (core/fencing.ts).
 */
import { randomUUID } from 'node:crypto';
import { NotFoundError } from '../../core/errors.js';
import type { LockEpochStore, SessionLease, SessionLockStore } from '../../core/ports.js';
import type { SqlDatabase } from './database.js';
import { run, statements } from './sql.js';

const SQL = statements(
  'sessionFenceNext',
  'sessionLockAcquire',
  'sessionLockRenew',
  'sessionLockRelease',
  'sessionLockRead',
  'sessionLockEpochBump',
);

/** The next fencing token of a session, with the session's version committed at that moment. */
export async function nextFence(db: SqlDatabase, tenant: string, sessionId: string): Promise<{ fence: number; version: number }> {
  const [row] = await run<{ fence: number | string; version: number | string }>(db, SQL.sessionFenceNext, { id: sessionId, tenant });
  if (!row) throw new NotFoundError('session', sessionId);
  return { fence: Number(row.fence), version: Number(row.version) };
}

export class PostgresSessionLockStore implements SessionLockStore {
  readonly kind = 'postgres';

  /**
   * @param keyPrefix with Redis leases (this store stands in while Redis is unreachable), their
   *   keyspace: tokens are then above its lock epoch's, so above any token Redis handed out.
   */
  constructor(
    private readonly db: SqlDatabase,
    private readonly keyPrefix: string | null = null,
  ) {}

  async tryAcquire(tenant: string, sessionId: string, ttlMs: number): Promise<SessionLease | null> {
    const token = randomUUID();
    // One statement: take the lease if it is free or lapsed, and bump the fence only if taken.
    type Acquired = { found: boolean; fence: number | string | null; version: number | string | null };
    const [row] = await run<Acquired>(this.db, SQL.sessionLockAcquire, {
      sessionId,
      tenant,
      token,
      ttlMs,
      keyPrefix: this.keyPrefix,
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

/** The lock epoch of a Redis keyspace, and the read a Redis lease makes after it was taken. */
export class PostgresLockEpochs implements LockEpochStore {
  constructor(
    private readonly db: SqlDatabase,
    private readonly keyPrefix: string,
  ) {}

  async read(tenant: string, sessionId: string): Promise<{ version: number; fence: number; epoch: number | null } | null> {
    type Row = { version: number | string; fence: number | string; epoch: number | string | null };
    const [row] = await run<Row>(this.db, SQL.sessionLockRead, { tenant, id: sessionId, keyPrefix: this.keyPrefix });
    if (!row) return null;
    return { version: Number(row.version), fence: Number(row.fence), epoch: row.epoch === null ? null : Number(row.epoch) };
  }

  async bump(atLeast: number): Promise<number> {
    const [row] = await run<{ epoch: number | string }>(this.db, SQL.sessionLockEpochBump, { keyPrefix: this.keyPrefix, atLeast });
    return Number(row?.epoch);
  }
}
