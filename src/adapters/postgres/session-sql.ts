/**
 * SQL fragments still spliced into the run repository's statements. The session rules they
 * spell out are defined once in the database (migration 051): agent_sessions_live(s),
 * agent_sessions_slide_expiry(s); the static statements in sql/ call those instead.
 */

const LIVE_STATUSES_SQL = `('initializing', 'active', 'idle', 'waiting_input')`;

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

/** Sliding expiry: activity moves expires_at forward by the session's TTL, never past its lifetime. */
export const SLIDE_EXPIRY_SQL = `CASE WHEN s.ttl_seconds IS NULL THEN s.expires_at
  ELSE LEAST(now() + s.ttl_seconds * interval '1 second', s.lifetime_ends_at) END`;

/** Expands a JSON array parameter into a set of uuids (works the same on pg and PGlite). */
export function uuidListSql(param: string): string {
  return `(SELECT (jsonb_array_elements_text(${param}::jsonb))::uuid)`;
}
