/**
 * The record of cache writes that could not reach Redis (sql/cache-repair-*.sql). A write is
 * acknowledged only after its row is here, so no acknowledged version can be shadowed by an
 * older cached one once the rows are drained. Recording notifies the other instances, and any
 * instance that reaches Redis drains at once; an instance recovering from an outage drains
 * before it reads from Redis again, waiting for a drain already in progress elsewhere (rows
 * are taken with FOR UPDATE, not SKIP LOCKED, for that reason).
 */
import { sessionKey, splitSessionKey } from '../../core/ids.js';
import type { CacheRepair, CacheRepairLog } from '../../core/cache-tiers.js';
import type { SqlDatabase } from './database.js';
import { run, statements } from './sql.js';

export const CACHE_REPAIR_CHANNEL = 'agent_sessions_cache_repair';

const SQL = statements(
  'cacheRepairRecord',
  'cacheRepairTake',
  'cacheRepairDelete',
  'cacheRepairServerLock',
  'cacheRepairServerSet',
);

export class PostgresCacheRepairLog implements CacheRepairLog {
  constructor(private readonly db: SqlDatabase) {}

  /**
   * Records the repair and announces it (payload "<tenant>/<id> <version>"): Redis could not carry
   * this write's invalidation, so the other instances' near caches learn of it here.
   */
  async record(key: string, version: number): Promise<void> {
    // The cache names a session by its key (tenant/id); the log stores both parts.
    const parts = splitSessionKey(key);
    if (!parts) throw new Error(`not a session key: ${key}`);
    await run(this.db, SQL.cacheRepairRecord, {
      sessionId: parts.id,
      tenant: parts.tenant,
      version: String(version),
      channel: CACHE_REPAIR_CHANNEL,
    });
  }

  /** Hands every recorded repair to `repair` in batches, deleting each batch it finished. */
  async drain(repair: (batch: CacheRepair[]) => Promise<void>, batchSize = 500): Promise<number> {
    let total = 0;
    for (;;) {
      const n = await this.db.transaction(async (tx) => {
        const rows = await run<{ id: number; tenant_id: string; session_id: string; version: number | string }>(tx, SQL.cacheRepairTake, {
          batchSize,
        });
        if (rows.length === 0) return 0;
        await repair(rows.map((r) => ({ sessionId: sessionKey(r.tenant_id, r.session_id), version: Number(r.version) })));
        await run(tx, SQL.cacheRepairDelete, { ids: rows.map((r) => r.id) });
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
      const [row] = await run<{ identity: string }>(tx, SQL.cacheRepairServerLock, { keyPrefix });
      if (row?.identity === identity) return false;
      await clear();
      await run(tx, SQL.cacheRepairServerSet, { keyPrefix, identity });
      return true;
    });
  }

  onRecorded(listener: (repair: CacheRepair | null) => void): Promise<() => Promise<void>> {
    return this.db.listen(CACHE_REPAIR_CHANNEL, (payload) => {
      const [id, version] = payload.split(' ');
      listener(id && version ? { sessionId: id, version: Number(version) } : null);
    });
  }
}
