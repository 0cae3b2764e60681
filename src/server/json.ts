/** Conversions between the core's camelCase model and the API's snake_case JSON. */
import type { CreateSessionInput, Session, SessionItem, UpdateSessionInput } from '../core/types.js';
import type { ItemJson, SessionJson } from './schemas.js';

export function sessionJson(s: Session): SessionJson {
  return {
    id: s.id,
    tenant_id: s.tenantId,
    version: s.version,
    status: s.status,
    user_id: s.userId,
    org_id: s.orgId,
    model: s.model,
    title: s.title,
    system_prompt: s.systemPrompt,
    workspace_path: s.workspacePath,
    mcp_client_ids: s.mcpClientIds,
    parent_session_id: s.parentSessionId,
    metadata: s.metadata,
    total_turns: s.totalTurns,
    message_count: s.messageCount,
    total_cost_usd: s.totalCostUsd,
    input_tokens: s.inputTokens,
    output_tokens: s.outputTokens,
    ttl_seconds: s.ttlSeconds,
    idle_timeout_seconds: s.idleTimeoutSeconds,
    created_at: s.createdAt,
    updated_at: s.updatedAt,
    last_active_at: s.lastActiveAt,
    expires_at: s.expiresAt,
    ended_at: s.endedAt,
    end_reason: s.endReason,
  };
}

export function itemJson(i: SessionItem): ItemJson {
  return { id: i.id, seq: i.seq, role: i.role, type: i.type, content: i.content, created_at: i.createdAt };
}

type Snake = Record<string, unknown>;

const FIELD_NAMES: Record<string, string> = {
  id: 'id',
  user_id: 'userId',
  org_id: 'orgId',
  status: 'status',
  model: 'model',
  title: 'title',
  system_prompt: 'systemPrompt',
  workspace_path: 'workspacePath',
  mcp_client_ids: 'mcpClientIds',
  parent_session_id: 'parentSessionId',
  metadata: 'metadata',
  ttl_seconds: 'ttlSeconds',
  idle_timeout_seconds: 'idleTimeoutSeconds',
  total_turns: 'totalTurns',
  message_count: 'messageCount',
  total_cost_usd: 'totalCostUsd',
  input_tokens: 'inputTokens',
  output_tokens: 'outputTokens',
};

/** Renames the (already validated) snake_case fields of a request body to the core's names. */
export function fromSnake<T extends CreateSessionInput | UpdateSessionInput | Record<string, number>>(body: Snake): T {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(body)) {
    const name = FIELD_NAMES[key];
    if (name !== undefined && value !== undefined) out[name] = value;
  }
  return out as T;
}

/** Parses `If-Match: "5"` (or W/"5", or 5) into a version; `*` means any version. */
export function parseIfMatch(header: string | undefined): number | undefined | 'invalid' {
  if (header === undefined || header.trim() === '*') return undefined;
  const m = /^\s*(?:W\/)?"?(\d{1,15})"?\s*$/.exec(header);
  return m?.[1] ? Number(m[1]) : 'invalid';
}

export function etag(version: number): string {
  return `"${version}"`;
}
