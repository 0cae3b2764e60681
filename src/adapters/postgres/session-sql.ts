/**
 * SQL fragments shared by the session queries. Kept as constants so every statement uses
 * the same definition of "live" and "expired".
 */

export const LIVE_STATUSES_SQL = `('initializing', 'active', 'idle', 'waiting_input')`;

/**
 * True while the row (alias `a`) can still take writes. A session with a run going
 * (`active`) is not idle, however long its agent has been quiet.
 */
export function liveSql(a: string): string {
  return `(${a}.status IN ${LIVE_STATUSES_SQL}
    AND (${a}.expires_at IS NULL OR ${a}.expires_at > now())
    AND (${a}.idle_timeout_seconds IS NULL OR ${a}.status = 'active'
         OR ${a}.last_active_at + ${a}.idle_timeout_seconds * interval '1 second' > now()))`;
}

/** The status a reader sees: live statuses past their deadline read as expired. */
export function effectiveStatusSql(a: string): string {
  return `(CASE WHEN ${a}.status IN ${LIVE_STATUSES_SQL} AND NOT ${liveSql(a)} THEN 'expired' ELSE ${a}.status END)`;
}

/** Sliding expiry: activity moves expires_at forward by the session's TTL, never past its lifetime. */
export const SLIDE_EXPIRY_SQL = `CASE WHEN s.ttl_seconds IS NULL THEN s.expires_at
  ELSE LEAST(now() + s.ttl_seconds * interval '1 second', s.lifetime_ends_at) END`;

/**
 * Shallow metadata merge: the patch's keys replace the stored ones and a key set to null is
 * removed. Only top-level nulls remove keys; nulls nested inside values are kept as given.
 */
export function mergeMetadataSql(stored: string, patch: string): string {
  return `((${stored} || ${patch}) - ARRAY(SELECT k FROM jsonb_each(${patch}) AS p(k, v) WHERE v = 'null'::jsonb))`;
}

/** Columns that are bookkeeping, left out of event payloads. */
export const INTERNAL_COLUMNS_SQL = `'{fence,item_seq,output_seq,lifetime_ends_at,timeout_warned_at,prev_status,written,extra,running_run_id,queued_runs}'::text[]`;

/** Expands a JSON array parameter into a set of uuids (works the same on pg and PGlite). */
export function uuidListSql(param: string): string {
  return `(SELECT (jsonb_array_elements_text(${param}::jsonb))::uuid)`;
}

/** An outbox event: its type, its payload SQL over alias `u`, and an optional condition over `u`. */
export type EventSpec = [type: string, payload: string, when?: string];

/**
 * The CTE `ev` inserting outbox events for every row of CTE `source` (alias u), in the same
 * statement as the change, so the change and its events commit together.
 */
export function outboxEventsCte(source: string, events: readonly EventSpec[]): string {
  const values = events.map(([type, payload, when], i) => `(${i}, '${type}', ${payload}, ${when ?? 'true'})`).join(',\n      ');
  return `ev AS (
      INSERT INTO outbox (tenant_id, type, session_id, payload)
      SELECT u.tenant_id, e.type, u.id, e.payload
      FROM ${source} u CROSS JOIN LATERAL (VALUES
      ${values}) AS e(ord, type, payload, wanted)
      WHERE e.wanted ORDER BY u.id, e.ord
    )`;
}

/**
 * Where a statement announces the sessions it changed (PostgreSQL-only mode: other instances'
 * near caches listen). Sent by the statement itself, so it is delivered at commit and cannot
 * be lost after it.
 */
export interface WriteNotification {
  channel: string;
  /** The version announced for a deleted session. */
  deletedVersion: number;
}

/**
 * A CTE (`, nt AS (...)`) that NOTIFYs "<id> <version>" for every row of `source` (with `id`
 * and `version` columns), and the FROM item (`, nt`) that makes the statement evaluate it.
 * Empty without a notification.
 */
export function notifyCte(n: WriteNotification | null, source: string, deleted = false): { cte: string; join: string } {
  if (!n) return { cte: '', join: '' };
  const channel = `'${n.channel.replace(/'/g, "''")}'`;
  const version = deleted ? `'${n.deletedVersion}'` : 'u.version::text';
  return {
    cte: `, nt AS (SELECT count(pg_catalog.pg_notify(${channel}, u.id::text || ' ' || ${version})) AS n FROM ${source} u)`,
    join: ', nt',
  };
}
