/**
 * The sweeps (SPEC §9) and the stats: sql/sweep-*.sql and sql/stats-*.sql. Each sweep claims its rows with FOR UPDATE SKIP LOCKED (so
 * sweepers on several instances split the work and never act twice on one row) and commits
 * the change with its outbox events in one statement.
 */
import type { OutboxLag, SessionRef, StatsStore, SweepStore, TenantStats } from '../../core/ports.js';
import type { SqlDatabase } from './database.js';
import { run, statements } from './sql.js';

const SQL = statements(
  'sweepWarnExpiring',
  'sweepExpireDue',
  'sweepPurgeEnded',
  'sweepPrunePublishedEvents',
  'sweepPruneUnpublishedEvents',
  'sweepPruneOutput',
  'statsSessionsByStatus',
  'statsRunningRuns',
  'statsEventBacklog',
  'statsEventLag',
);

type Row = Record<string, unknown>;

function refs(rows: Row[]): SessionRef[] {
  return rows.map((r) => ({ id: String(r.id), tenantId: String(r.tenant_id) }));
}

export class PostgresSweepStore implements SweepStore {
  /**
   * Near caches hear of what a sweep changed after its commit: the sweeper evicts it through
   * the cache (docs/distributed.md, "PostgreSQL only").
   */
  constructor(private readonly db: SqlDatabase) {}

  async warnExpiring(leadSeconds: number, limit: number): Promise<SessionRef[]> {
    return refs(await run(this.db, SQL.sweepWarnExpiring, { leadSeconds, limit }));
  }

  async expireDue(limit: number): Promise<SessionRef[]> {
    // Every live status, 'active' included: readers already see such a session as expired
    // (effectiveStatus); the sweep writes that down and tells the world.
    return refs(await run(this.db, SQL.sweepExpireDue, { limit }));
  }

  async purgeEnded(days: number, limit: number): Promise<SessionRef[]> {
    return refs(await run(this.db, SQL.sweepPurgeEnded, { days, limit }));
  }

  async pruneOutbox(hours: number, includeUnpublished: boolean, limit: number): Promise<number> {
    const [published] = await run<{ n: number }>(this.db, SQL.sweepPrunePublishedEvents, { hours, limit });
    let n = Number(published?.n ?? 0);
    if (includeUnpublished && n < limit) {
      const [unpublished] = await run<{ n: number }>(this.db, SQL.sweepPruneUnpublishedEvents, { hours, limit: limit - n });
      n += Number(unpublished?.n ?? 0);
    }
    return n;
  }

  async pruneOutput(hours: number, limit: number): Promise<number> {
    const [row] = await run<{ n: number }>(this.db, SQL.sweepPruneOutput, { hours, limit });
    return Number(row?.n ?? 0);
  }
}

/** Per-tenant counts for GET /v1/stats. */
export class PostgresStatsStore implements StatsStore {
  constructor(private readonly db: SqlDatabase) {}

  async tenantStats(tenant: string): Promise<TenantStats> {
    const [byStatus, runs, outbox] = await Promise.all([
      run<{ status: string; n: number }>(this.db, SQL.statsSessionsByStatus, { tenant }),
      run<{ n: number }>(this.db, SQL.statsRunningRuns, { tenant }),
      run<{ n: number; age: number | null }>(this.db, SQL.statsEventBacklog, { tenant }),
    ]);
    return {
      sessionsByStatus: Object.fromEntries(byStatus.map((r) => [r.status, Number(r.n)])),
      activeRuns: Number(runs[0]?.n ?? 0),
      outboxBacklog: Number(outbox[0]?.n ?? 0),
      oldestUnpublishedAgeSeconds: outbox[0]?.age === null || outbox[0]?.age === undefined ? null : Number(outbox[0].age),
    };
  }

  /** The relay's lag over every tenant (metrics). */
  async outboxLag(): Promise<OutboxLag> {
    const [row] = await run<{ n: number; age: number | null }>(this.db, SQL.statsEventLag);
    return {
      backlog: Number(row?.n ?? 0),
      oldestUnpublishedAgeSeconds: row?.age === null || row?.age === undefined ? null : Number(row.age),
    };
  }
}
