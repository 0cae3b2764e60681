/**
 * The sweeps' statements (SPEC §9). Each claims its rows with FOR UPDATE SKIP LOCKED (so
 * sweepers on several instances split the work and never act twice on one row) and commits
 * the change with its outbox events in one statement.
 */
import type { OutboxLag, SessionRef, StatsStore, SweepStore, TenantStats } from '../../core/ports.js';
import type { SqlDatabase } from './database.js';
import { effectiveStatusSql, LIVE_STATUSES_SQL, notifyCte, outboxEventsCte, type WriteNotification } from './session-sql.js';

type Row = Record<string, unknown>;

/** When a live session (alias s) stops being live: the earlier of its expiry and its idle deadline. */
// A session with a run going (active) has no idle deadline; LEAST ignores the NULL.
const DEADLINE_SQL = `LEAST(s.expires_at,
  CASE WHEN s.status = 'active' THEN NULL ELSE s.last_active_at + s.idle_timeout_seconds * interval '1 second' END)`;

/** Why the deadline is what it is. */
const REASON_SQL = `CASE
  WHEN s.lifetime_ends_at IS NOT NULL AND s.lifetime_ends_at <= ${DEADLINE_SQL} THEN 'lifetime'
  WHEN s.expires_at IS NOT NULL AND s.expires_at <= ${DEADLINE_SQL} THEN 'ttl'
  ELSE 'idle_timeout' END`;

/** A warning is current when it was sent after the last activity (activity re-arms it). */
const WARNED_SQL = `(s.timeout_warned_at IS NOT NULL AND s.timeout_warned_at >= s.last_active_at)`;


function refs(rows: Row[]): SessionRef[] {
  return rows.map((r) => ({ id: String(r.id), tenantId: String(r.tenant_id) }));
}

export class PostgresSweepStore implements SweepStore {
  /**
   * `notification`: in PostgreSQL-only mode, expiries and purges announce themselves to the
   * other instances' near caches from the statement itself, like every session write.
   */
  constructor(
    private readonly db: SqlDatabase,
    private readonly notification: WriteNotification | null = null,
  ) {}

  private notify(source: string, deleted = false): { cte: string; join: string } {
    return notifyCte(this.notification, source, deleted);
  }

  async warnExpiring(leadSeconds: number, limit: number): Promise<SessionRef[]> {
    const rows = await this.db.query<Row>(
      `WITH due AS (
         SELECT s.id, ${DEADLINE_SQL} AS deadline, ${REASON_SQL} AS reason FROM sessions s
         WHERE s.status IN ${LIVE_STATUSES_SQL}
           AND NOT ${WARNED_SQL}
           AND ${DEADLINE_SQL} > now()
           AND ${DEADLINE_SQL} <= now() + $1::int * interval '1 second'
         ORDER BY ${DEADLINE_SQL}
         LIMIT $2
         FOR UPDATE OF s SKIP LOCKED
       ), u AS (
         UPDATE sessions s SET timeout_warned_at = now() FROM due WHERE s.id = due.id
         RETURNING s.id, s.tenant_id, s.version, due.deadline, due.reason
       ), ${outboxEventsCte('u', [
         [
           'session.timeout_warning',
           `jsonb_build_object('expires_at', u.deadline, 'reason', u.reason,
              'seconds_left', GREATEST(0, floor(extract(epoch FROM u.deadline - now())))::int, 'version', u.version)`,
         ],
       ])}
       SELECT id, tenant_id FROM u`,
      [leadSeconds, limit],
    );
    return refs(rows);
  }

  async expireDue(limit: number): Promise<SessionRef[]> {
    // Every live status, 'active' included: readers already see such a session as expired
    // (effectiveStatus); the sweep writes that down and tells the world.
    const rows = await this.db.query<Row>(
      `WITH due AS (
         SELECT s.id, s.status AS prev_status, ${DEADLINE_SQL} AS deadline, ${REASON_SQL} AS reason,
           ${WARNED_SQL} AS warned
         FROM sessions s
         WHERE s.status IN ${LIVE_STATUSES_SQL} AND ${DEADLINE_SQL} <= now()
         ORDER BY ${DEADLINE_SQL}
         LIMIT $1
         FOR UPDATE OF s SKIP LOCKED
       ), upd AS (
         UPDATE sessions s SET status = 'expired', ended_at = now(), end_reason = due.reason,
           version = s.version + 1, updated_at = now(),
           timeout_warned_at = CASE WHEN due.warned THEN s.timeout_warned_at ELSE now() END
         FROM due WHERE s.id = due.id
         RETURNING s.id, s.tenant_id, s.version, due.prev_status, due.deadline, due.reason, due.warned
       ), ${outboxEventsCte('upd', [
         // A session whose deadline passed between two sweeps still gets its one warning first.
         [
           'session.timeout_warning',
           `jsonb_build_object('expires_at', u.deadline, 'reason', u.reason, 'seconds_left', 0, 'version', u.version - 1)`,
           'NOT u.warned',
         ],
         ['session.status_changed', `jsonb_build_object('from', u.prev_status, 'to', 'expired', 'version', u.version)`],
         ['session.expired', `jsonb_build_object('reason', u.reason, 'expired_at', u.deadline, 'version', u.version)`],
       ])}${this.notify('upd').cte}
       SELECT id, tenant_id FROM upd${this.notify('upd').join}`,
      [limit],
    );
    return refs(rows);
  }

  async purgeEnded(days: number, limit: number): Promise<SessionRef[]> {
    const rows = await this.db.query<Row>(
      `WITH due AS (
         SELECT s.id FROM sessions s
         WHERE s.status IN ('terminated', 'failed', 'expired')
           AND s.ended_at < now() - $1::int * interval '1 day'
         ORDER BY s.ended_at
         LIMIT $2
         FOR UPDATE OF s SKIP LOCKED
       ), del AS (
         DELETE FROM sessions s USING due WHERE s.id = due.id RETURNING s.id, s.tenant_id, s.version
       ), ${outboxEventsCte('del', [['session.deleted', `jsonb_build_object('reason', 'retention', 'version', u.version)`]])}${this.notify('del', true).cte}
       SELECT id, tenant_id FROM del${this.notify('del', true).join}`,
      [days, limit],
    );
    return refs(rows);
  }

  async pruneOutbox(hours: number, includeUnpublished: boolean, limit: number): Promise<number> {
    const [published] = await this.db.query<{ n: number }>(
      `WITH due AS (
         SELECT id FROM outbox WHERE published_at IS NOT NULL AND published_at < now() - $1::int * interval '1 hour'
         ORDER BY published_at LIMIT $2 FOR UPDATE SKIP LOCKED
       ), del AS (DELETE FROM outbox o USING due WHERE o.id = due.id RETURNING 1)
       SELECT count(*)::int AS n FROM del`,
      [hours, limit],
    );
    let n = Number(published?.n ?? 0);
    if (includeUnpublished && n < limit) {
      const [unpublished] = await this.db.query<{ n: number }>(
        `WITH due AS (
           SELECT id FROM outbox WHERE published_at IS NULL AND created_at < now() - $1::int * interval '1 hour'
           ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED
         ), del AS (DELETE FROM outbox o USING due WHERE o.id = due.id RETURNING 1)
         SELECT count(*)::int AS n FROM del`,
        [hours, limit - n],
      );
      n += Number(unpublished?.n ?? 0);
    }
    return n;
  }
}

/** Per-tenant counts for GET /v1/stats. */
export class PostgresStatsStore implements StatsStore {
  constructor(private readonly db: SqlDatabase) {}

  async tenantStats(tenant: string): Promise<TenantStats> {
    const [byStatus, runs, outbox] = await Promise.all([
      this.db.query<{ status: string; n: number }>(
        `SELECT ${effectiveStatusSql('s')} AS status, count(*)::int AS n FROM sessions s WHERE s.tenant_id = $1 GROUP BY 1`,
        [tenant],
      ),
      this.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM runs WHERE tenant_id = $1 AND status = 'running'`, [tenant]),
      this.db.query<{ n: number; age: number | null }>(
        `SELECT count(*)::int AS n, extract(epoch FROM now() - min(created_at))::float8 AS age
         FROM outbox WHERE tenant_id = $1 AND published_at IS NULL`,
        [tenant],
      ),
    ]);
    return {
      sessionsByStatus: Object.fromEntries(byStatus.map((r) => [r.status, Number(r.n)])),
      activeRuns: Number(runs[0]?.n ?? 0),
      outboxBacklog: Number(outbox[0]?.n ?? 0),
      oldestUnpublishedAgeSeconds: outbox[0]?.age === null || outbox[0]?.age === undefined ? null : Number(outbox[0].age),
    };
  }

  /** The relay's lag over every tenant (metrics); both partial indexes on unpublished rows serve it. */
  async outboxLag(): Promise<OutboxLag> {
    const [row] = await this.db.query<{ n: number; age: number | null }>(
      `SELECT count(*)::int AS n, extract(epoch FROM now() - min(created_at))::float8 AS age
       FROM outbox WHERE published_at IS NULL`,
    );
    return {
      backlog: Number(row?.n ?? 0),
      oldestUnpublishedAgeSeconds: row?.age === null || row?.age === undefined ? null : Number(row.age),
    };
  }
}
