/**
 * Idempotency keys on PostgreSQL (pg or PGlite): sql/idempotency-*.sql, table
 * idempotency_keys (migration 058). `execute` runs the operation in an ambient transaction
 * (ambient-transaction.ts), so the operation's statements and the stored answer commit
 * together, under an advisory lock per (tenant, key).
 */
import { isStoredAnswer, type IdempotencyStore, type StoredAnswer, type StoredKey } from '../../core/idempotency.js';
import type { AmbientDatabase } from './ambient-transaction.js';
import { run, statements } from './sql.js';

const SQL = statements('idempotencyFind', 'idempotencyLock', 'idempotencyStore', 'idempotencyDeleteTenant', 'idempotencyDeleteNaming', 'sweepPruneIdempotencyKeys');

type Row = Record<string, unknown>;

function rowToStored(row: Row): StoredKey {
  const headers = typeof row.headers === 'string' ? (JSON.parse(row.headers) as unknown) : row.headers;
  return {
    fingerprint: String(row.fingerprint),
    answer: {
      status: Number(row.status),
      headers: (headers ?? {}) as Record<string, string>,
      body: row.body === null || row.body === undefined ? null : (JSON.parse(String(row.body)) as unknown),
    },
  };
}

export class PostgresIdempotencyStore implements IdempotencyStore {
  constructor(private readonly db: AmbientDatabase) {}

  async find(tenant: string, key: string): Promise<StoredKey | null> {
    const [row] = await run(this.db, SQL.idempotencyFind, { tenant, key });
    return row ? rowToStored(row) : null;
  }

  execute(
    tenant: string,
    key: string,
    fingerprint: string,
    ttlSeconds: number,
    fn: () => Promise<StoredAnswer>,
  ): Promise<{ stored: StoredKey | null; answer: StoredAnswer }> {
    return this.db.withinTransaction(async (tx) => {
      await run(tx, SQL.idempotencyLock, { tenant, key });
      // Read after the lock: a duplicate that waited sees the answer its predecessor committed.
      const [row] = await run(tx, SQL.idempotencyFind, { tenant, key });
      if (row) {
        const stored = rowToStored(row);
        return { stored, answer: stored.answer };
      }
      const answer = await fn();
      if (isStoredAnswer(answer)) {
        await run(tx, SQL.idempotencyStore, {
          tenant,
          key,
          fingerprint,
          status: answer.status,
          headers: JSON.stringify(answer.headers),
          body: answer.body === null || answer.body === undefined ? null : JSON.stringify(answer.body),
          ttlSeconds,
        });
      }
      return { stored: null, answer };
    });
  }

  async pruneExpired(limit: number): Promise<number> {
    const [row] = await run<{ n: number }>(this.db, SQL.sweepPruneIdempotencyKeys, { limit });
    return Number(row?.n ?? 0);
  }

  async deleteNaming(tenant: string, sessionIds: readonly string[]): Promise<number> {
    if (sessionIds.length === 0) return 0;
    const [row] = await run<{ deleted: number }>(this.db, SQL.idempotencyDeleteNaming, { tenant, ids: JSON.stringify(sessionIds) });
    return Number(row?.deleted ?? 0);
  }

  async deleteTenant(tenant: string): Promise<number> {
    const [row] = await run<{ deleted: number }>(this.db, SQL.idempotencyDeleteTenant, { tenant });
    return Number(row?.deleted ?? 0);
  }
}
