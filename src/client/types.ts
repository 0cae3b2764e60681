/**
 * The wire shapes of the v1 API as the client sees them: the server's own schema types
 * (snake_case JSON), re-exported, so client and server cannot drift apart.
 */
import type { SessionJson as SessionSchemaJson } from '../server/schemas.js';

export type {
  AppendItemsJson,
  BatchDeleteJson,
  ClearJson,
  CountersJson,
  CreateSessionJson,
  ForkSessionJson,
  ItemJson,
  ItemPageJson,
  ListItemsQueryJson,
  ListSessionsQueryJson,
  NewItemJson,
  PopJson,
  ProblemJson,
  UpdateSessionJson,
} from '../server/schemas.js';
export type {
  IfBusyJson,
  InputSentJson,
  OutputEventJson,
  RunJsonType as RunJson,
  RunPageJson,
  StartRunJson,
} from '../server/routes/runs.js';
export type { EventJson } from '../server/routes/events.js';
export type { StatsJson } from '../server/routes/stats.js';
export type { ApiKeyJson, CreatedKeyJson, CreateKeyJson, KeyListJson } from '../server/routes/admin-keys.js';
export type { ReadyJson } from '../server/routes/health.js';

/** A session as the API returns it; `version` is also its ETag (`"<version>"`). */
export type SessionJson = Omit<SessionSchemaJson, 'metadata'> & { metadata: Record<string, unknown> };

/** A page of sessions, newest first; `next_cursor` is null on the last page. */
export interface SessionPageJson {
  sessions: SessionJson[];
  next_cursor: string | null;
}

export interface BatchGetJson {
  sessions: SessionJson[];
  not_found: string[];
}
