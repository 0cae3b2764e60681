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

/** The next fencing token of a session. */
export async function nextFence(db: SqlDatabase, tenant: string, sessionId: string): Promise<number> {
  const rows = await db.query<{ fence: number | string }>(
    'UPDATE sessions SET fence = fence + 1 WHERE id = $1::uuid AND tenant_id = $2 RETURNING fence',
    [sessionId, tenant],
  );
  const row = rows[0];
  if (!row) throw new NotFoundError('session', sessionId);
  return Number(row.fence);
}

export class PostgresSessionLockStore implements SessionLockStore {
  readonly kind = 'postgres';

  constructor(private readonly db: SqlDatabase) {}

  async tryAcquire(tenant: string, sessionId: string, ttlMs: number): Promise<SessionLease | null> {
    const token = randomUUID();
    // One statement: take the lease if it is free or lapsed, and bump the fence only if taken.
    const rows = await this.db.query<{ found: boolean; fence: number | string | null }>(
      `WITH s AS (
         SELECT id FROM sessions WHERE id = $1::uuid AND tenant_id = $2
       ), lk AS (
         INSERT INTO session_locks (session_id, token, expires_at)
         SELECT id, $3, now() + $4::int * interval '1 millisecond' FROM s
         ON CONFLICT (session_id) DO UPDATE SET token = EXCLUDED.token, expires_at = EXCLUDED.expires_at
           WHERE session_locks.expires_at <= now()
         RETURNING session_id
       ), f AS (
         UPDATE sessions SET fence = fence + 1 WHERE id = (SELECT session_id FROM lk) RETURNING fence
       )
       SELECT EXISTS (SELECT 1 FROM s) AS found, (SELECT fence FROM f) AS fence`,
      [sessionId, tenant, token, ttlMs],
    );
    const row = rows[0];
    if (!row?.found) throw new NotFoundError('session', sessionId);
    if (row.fence === null) return null;
    return {
      fencingToken: Number(row.fence),
      // A lapsed lease is lost even if nobody has taken it yet, as with a Redis key that expired.
      renew: async (ms) => {
        const renewed = await this.db.query(
          `UPDATE session_locks SET expires_at = now() + $3::int * interval '1 millisecond'
           WHERE session_id = $1::uuid AND token = $2 AND expires_at > now() RETURNING 1`,
          [sessionId, token, ms],
        );
        return renewed.length === 1;
      },
      release: async () => {
        await this.db.query('DELETE FROM session_locks WHERE session_id = $1::uuid AND token = $2', [sessionId, token]);
      },
    };
  }
}
