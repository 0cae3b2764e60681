/** A session snapshot for tests that feed caches directly (no repository): every field, defaults you can override. */
import type { Session } from '../../src/core/types.js';

export function sessionSnapshot(id: string, version: number, extra: Partial<Session> = {}, at = new Date()): Session {
  const time = at.toISOString();
  return {
    id,
    tenantId: 'default',
    userId: null,
    orgId: null,
    status: 'idle',
    model: null,
    title: `v${version}`,
    systemPrompt: null,
    workspacePath: null,
    mcpClientIds: [],
    parentSessionId: null,
    metadata: {},
    totalTurns: 0,
    messageCount: 0,
    totalCostUsd: 0,
    inputTokens: 0,
    outputTokens: 0,
    version,
    revision: 1,
    ttlSeconds: null,
    idleTimeoutSeconds: null,
    createdAt: time,
    updatedAt: time,
    lastActiveAt: time,
    expiresAt: null,
    endedAt: null,
    endReason: null,
    ...extra,
  };
}
