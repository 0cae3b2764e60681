/** Conversions from driver values (pg and PGlite differ slightly) to the model's types. */
import type { Session, SessionStatus } from '../../core/types.js';

export type Row = Record<string, unknown>;

export function iso(v: unknown): string {
  return v instanceof Date ? v.toISOString() : new Date(String(v)).toISOString();
}

export function isoOrNull(v: unknown): string | null {
  return v === null || v === undefined ? null : iso(v);
}

export function numOrNull(v: unknown): number | null {
  return v === null || v === undefined ? null : Number(v);
}

export function strOrNull(v: unknown): string | null {
  return v === null || v === undefined ? null : String(v);
}

export function rowToSession(r: Row): Session {
  return {
    id: String(r.id),
    tenantId: String(r.tenant_id),
    userId: strOrNull(r.user_id),
    orgId: strOrNull(r.org_id),
    status: r.status as SessionStatus,
    model: strOrNull(r.model),
    title: strOrNull(r.title),
    systemPrompt: strOrNull(r.system_prompt),
    workspacePath: strOrNull(r.workspace_path),
    mcpClientIds: (r.mcp_client_ids as string[] | null) ?? [],
    parentSessionId: strOrNull(r.parent_session_id),
    metadata: (r.metadata as Record<string, unknown> | null) ?? {},
    totalTurns: Number(r.total_turns),
    messageCount: Number(r.message_count),
    totalCostUsd: Number(r.total_cost_usd),
    inputTokens: Number(r.input_tokens),
    outputTokens: Number(r.output_tokens),
    version: Number(r.version),
    revision: Number(r.revision),
    ttlSeconds: numOrNull(r.ttl_seconds),
    idleTimeoutSeconds: numOrNull(r.idle_timeout_seconds),
    createdAt: iso(r.created_at),
    updatedAt: iso(r.updated_at),
    lastActiveAt: iso(r.last_active_at),
    expiresAt: isoOrNull(r.expires_at),
    endedAt: isoOrNull(r.ended_at),
    endReason: strOrNull(r.end_reason),
  };
}

/**
 * The session a create inserted, from the columns session-create.sql replies with: the ones
 * the insert leaves at their column defaults are those defaults (counters 0, revision 1;
 * updated_at and last_active_at are `now()` like created_at, the same instant in one
 * statement; not ended). Receiving and decoding the whole row (34 columns, six of them
 * timestamps) cost a create about 25 µs of client CPU, more than the rest of the library
 * around the statement.
 * The revision is not read back so that the create runs on a schema from before it
 * (migration 054), as it did with `RETURNING *`.
 */
export function createdRowToSession(r: Row): Session {
  // Filled in on the driver's row itself (read once, never kept): a copy by object spread cost
  // about 25 µs a create (the copy of a 17-column row turns into a slow dictionary object).
  Object.assign(r, CREATED_DEFAULTS);
  r.updated_at = r.created_at;
  r.last_active_at = r.created_at;
  return rowToSession(r);
}

const CREATED_DEFAULTS: Readonly<Row> = Object.freeze({
  total_turns: 0,
  message_count: 0,
  total_cost_usd: 0,
  input_tokens: 0,
  output_tokens: 0,
  revision: 1,
  ended_at: null,
  end_reason: null,
});
