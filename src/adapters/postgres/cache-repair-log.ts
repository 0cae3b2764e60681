/**
 * The record of cache writes that could not reach Redis. A write is acknowledged only after
 * its row is here, so no acknowledged version can be shadowed by an older cached one once
 * the rows are drained. Recording notifies the other instances, and any instance that
 * reaches Redis drains at once; an instance recovering from an outage drains before it
 * reads from Redis again, waiting for a drain already in progress elsewhere (rows are taken
 * with FOR UPDATE, not SKIP LOCKED, for that reason).
 */
import type { CacheRepair, CacheRepairLog } from '../../core/cache-tiers.js';
import type { SqlDatabase } from './database.js';

export const CACHE_REPAIR_CHANNEL = 'agent_sessions_cache_repair';

export class PostgresCacheRepairLog implements CacheRepairLog {
  constructor(private readonly db: SqlDatabase) {}

  /**
   * Records the repair and announces it (payload "<id> <version>"): Redis could not carry
   * this write's invalidation, so the other instances' near caches learn of it here.
   */
  async record(sessionId: string, version: number): Promise<void> {
    await this.db.query(
      `WITH ins AS (INSERT INTO cache_repairs (session_id, version) VALUES ($1::uuid, $2::bigint))
       SELECT pg_notify($3, $1::uuid::text || ' ' || $2::bigint::text)`,
      [sessionId, String(version), CACHE_REPAIR_CHANNEL],
    );
  }

  /** Hands every recorded repair to `repair` in batches, deleting each batch it finished. */
  async drain(repair: (batch: CacheRepair[]) => Promise<void>, batchSize = 500): Promise<number> {
    let total = 0;
    for (;;) {
      const n = await this.db.transaction(async (tx) => {
        const rows = await tx.query<{ id: number; session_id: string; version: number | string }>(
          `SELECT id, session_id, version FROM cache_repairs ORDER BY id LIMIT $1 FOR UPDATE`,
          [batchSize],
        );
        if (rows.length === 0) return 0;
        await repair(rows.map((r) => ({ sessionId: String(r.session_id), version: Number(r.version) })));
        await tx.query(`DELETE FROM cache_repairs WHERE id = ANY($1::bigint[])`, [rows.map((r) => r.id)]);
        return rows.length;
      });
      total += n;
      if (n < batchSize) return total;
    }
  }

  /**
   * Makes sure Redis `identity` (a server this instance just connected to) holds nothing
   * older than PostgreSQL: unless it is the server recorded for `keyPrefix`, `clear` deletes
   * the prefix's keys and the server is recorded. The row lock makes concurrent instances
   * wait for one clear instead of each clearing again after the first has started writing.
   * Resolves to whether this call cleared.
   */
  async verifyServer(keyPrefix: string, identity: string, clear: () => Promise<void>): Promise<boolean> {
    return this.db.transaction(async (tx) => {
      await tx.query(
        `INSERT INTO cache_redis_servers (key_prefix, identity) VALUES ($1, '') ON CONFLICT (key_prefix) DO NOTHING`,
        [keyPrefix],
      );
      const rows = await tx.query<{ identity: string }>(
        'SELECT identity FROM cache_redis_servers WHERE key_prefix = $1 FOR UPDATE',
        [keyPrefix],
      );
      if (rows[0]?.identity === identity) return false;
      await clear();
      await tx.query('UPDATE cache_redis_servers SET identity = $2, verified_at = now() WHERE key_prefix = $1', [keyPrefix, identity]);
      return true;
    });
  }

  async pending(): Promise<number> {
    const rows = await this.db.query<{ n: number | string }>('SELECT count(*) AS n FROM cache_repairs');
    return Number(rows[0]?.n ?? 0);
  }

  onRecorded(listener: (repair: CacheRepair | null) => void): Promise<() => Promise<void>> {
    return this.db.listen(CACHE_REPAIR_CHANNEL, (payload) => {
      const [id, version] = payload.split(' ');
      listener(id && version ? { sessionId: id, version: Number(version) } : null);
    });
  }
}
