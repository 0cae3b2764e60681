/** Sessions on the wire: the session resource, its write bodies, lists and batches. */
import { Type, type Static } from 'typebox';
import {
  COUNTER_NAMES,
  CREATE_STATUSES,
  SESSION_STATUSES,
  type CounterName,
  type CreateSessionInput,
  type Session as SessionModel,
  type UpdateSessionInput,
} from '../core/types.js';
import { MAX_SEARCH_LENGTH } from '../core/limits.js';
import {
  assertSame,
  Cursor,
  DateTime,
  IdempotencyKey,
  Nullable,
  PageLimit,
  SessionId,
  StringEnum,
  Text,
  toCamel,
  toSnake,
  type CamelCased,
  type Same,
  type SnakeCased,
} from './common.js';

export { SessionId, SessionIdParams } from './common.js';

export const Status = StringEnum(SESSION_STATUSES);
const Seconds = Type.Integer({ minimum: 1, maximum: 2_147_483_647 });
const Metadata = Type.Record(Type.String(), Type.Unknown(), { description: 'Free-form JSON object, size-capped' });

export const Session = Type.Object({
  id: Type.String(),
  tenant_id: Type.String(),
  version: Type.Integer({ description: '+1 on every write; orders caches' }),
  revision: Type.Integer({ description: '+1 on writes to the fields a client sets (update, terminate); the ETag' }),
  status: Status,
  user_id: Nullable(Type.String()),
  org_id: Nullable(Type.String()),
  model: Nullable(Type.String()),
  title: Nullable(Type.String()),
  system_prompt: Nullable(Type.String()),
  workspace_path: Nullable(Type.String()),
  mcp_client_ids: Type.Array(Type.String()),
  parent_session_id: Nullable(Type.String()),
  // Any key at all (a Record's pattern would drop keys holding a line break when serialized).
  metadata: Type.Unsafe<Record<string, unknown>>({ type: 'object', additionalProperties: true }),
  total_turns: Type.Integer(),
  message_count: Type.Integer(),
  total_cost_usd: Type.Number(),
  input_tokens: Type.Integer(),
  output_tokens: Type.Integer(),
  ttl_seconds: Nullable(Type.Integer()),
  idle_timeout_seconds: Nullable(Type.Integer()),
  created_at: DateTime,
  updated_at: DateTime,
  last_active_at: DateTime,
  expires_at: Nullable(DateTime),
  ended_at: Nullable(DateTime),
  end_reason: Nullable(Type.String()),
});
/** A session as the API returns it; `revision` is also its ETag (`"<revision>"`). */
export type SessionJson = Static<typeof Session>;
assertSame<Same<SessionJson, SnakeCased<SessionModel>>>();

export const CreateSessionBody = Type.Object(
  {
    id: Type.Optional(SessionId),
    user_id: Type.Optional(Nullable(Text())),
    org_id: Type.Optional(Nullable(Text())),
    status: Type.Optional(StringEnum(CREATE_STATUSES)),
    model: Type.Optional(Nullable(Text())),
    title: Type.Optional(Nullable(Text())),
    system_prompt: Type.Optional(Nullable(Type.String())),
    workspace_path: Type.Optional(Nullable(Text())),
    mcp_client_ids: Type.Optional(Type.Array(Text(), { maxItems: 100 })),
    parent_session_id: Type.Optional(Nullable(SessionId)),
    metadata: Type.Optional(Metadata),
    ttl_seconds: Type.Optional(Nullable(Seconds)),
    idle_timeout_seconds: Type.Optional(Nullable(Seconds)),
  },
  { additionalProperties: false },
);
export type CreateSessionJson = Static<typeof CreateSessionBody>;

/** PUT /v1/sessions/{id}: the create body without `id` (the path names it). */
export const PutSessionBody = Type.Omit(CreateSessionBody, ['id'], { additionalProperties: false });
export type PutSessionJson = Static<typeof PutSessionBody>;

export const UpdateSessionBody = Type.Object(
  {
    status: Type.Optional(Status),
    model: Type.Optional(Nullable(Text())),
    title: Type.Optional(Nullable(Text())),
    system_prompt: Type.Optional(Nullable(Type.String())),
    workspace_path: Type.Optional(Nullable(Text())),
    mcp_client_ids: Type.Optional(Type.Array(Text(), { maxItems: 100 })),
    metadata: Type.Optional(Metadata),
    idle_timeout_seconds: Type.Optional(Nullable(Seconds)),
  },
  { additionalProperties: false, minProperties: 1 },
);
export type UpdateSessionJson = Static<typeof UpdateSessionBody>;

export const ForkBody = Type.Object(
  {
    id: Type.Optional(SessionId),
    user_id: Type.Optional(Nullable(Text())),
    model: Type.Optional(Nullable(Text())),
    title: Type.Optional(Nullable(Text())),
    metadata: Type.Optional(Metadata),
    ttl_seconds: Type.Optional(Nullable(Seconds)),
  },
  { additionalProperties: false },
);
export type ForkSessionJson = Static<typeof ForkBody>;

const Count = Type.Integer({ minimum: 0, maximum: 1_000_000_000 });
const Cost = Type.Number({ minimum: 0, maximum: 1_000_000_000 });
export const CountersBody = Type.Object(
  {
    total_turns: Type.Optional(Count),
    message_count: Type.Optional(Count),
    total_cost_usd: Type.Optional(Cost),
    input_tokens: Type.Optional(Count),
    output_tokens: Type.Optional(Count),
  },
  { additionalProperties: false, minProperties: 1 },
);
export type CountersJson = Static<typeof CountersBody>;
// Every counter of the core, and nothing else, is a field of the body.
assertSame<Same<keyof CamelCased<CountersJson>, CounterName>>();
assertSame<Same<(typeof COUNTER_NAMES)[number], CounterName>>();

export const ListSessionsQuery = Type.Object(
  {
    user_id: Type.Optional(Text()),
    status: Type.Optional(Status),
    updated_after: Type.Optional(DateTime),
    q: Type.Optional(Type.String({ maxLength: MAX_SEARCH_LENGTH, description: 'Search: id prefix or a part of the title, case-insensitive' })),
    cursor: Type.Optional(Cursor),
    limit: Type.Optional(PageLimit),
  },
  { additionalProperties: false },
);
export type ListSessionsQueryJson = Static<typeof ListSessionsQuery>;

export const SessionPage = Type.Object({ sessions: Type.Array(Session), next_cursor: Nullable(Type.String()) });
/** A page of sessions, newest first; `next_cursor` is null on the last page. */
export type SessionPageJson = Static<typeof SessionPage>;

export const DeleteQuery = Type.Object(
  {
    reason: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })),
    purge: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);

export const BatchIds = Type.Array(SessionId, { minItems: 1, maxItems: 100 });
export const BatchGetBody = Type.Object({ ids: BatchIds }, { additionalProperties: false });
export const BatchGetResponse = Type.Object({ sessions: Type.Array(Session), not_found: Type.Array(Type.String()) });
export type BatchGetJson = Static<typeof BatchGetResponse>;
export const BatchDeleteBody = Type.Object(
  { ids: BatchIds, purge: Type.Optional(Type.Boolean()), reason: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })) },
  { additionalProperties: false },
);
export const BatchDeleteResponse = Type.Object({ deleted: Type.Array(Type.String()), not_found: Type.Array(Type.String()) });
export type BatchDeleteJson = Static<typeof BatchDeleteResponse>;

export const IfMatchHeaders = Type.Object({ 'if-match': Type.Optional(Type.String({ maxLength: 64 })) });

/** If-Match and Idempotency-Key (the POSTs that take a precondition). */
export const IdempotentIfMatchHeaders = Type.Object({
  'if-match': Type.Optional(Type.String({ maxLength: 64 })),
  'idempotency-key': Type.Optional(IdempotencyKey),
});

// ---------------------------------------------------------------------------------------
// Mappers

export function sessionJson(s: SessionModel): SessionJson {
  return toSnake(s);
}

export function createSessionInput(body: CreateSessionJson | ForkSessionJson): CreateSessionInput {
  return toCamel(body);
}

export function updateSessionInput(body: UpdateSessionJson): UpdateSessionInput {
  return toCamel(body);
}

export function counterDeltas(body: CountersJson): Partial<Record<CounterName, number>> {
  return toCamel(body);
}

/** Parses `If-Match: "5"` (or W/"5", or 5) into a revision; `*` means any revision. */
export function parseIfMatch(header: string | undefined): number | undefined | 'invalid' {
  if (header === undefined || header.trim() === '*') return undefined;
  const m = /^\s*(?:W\/)?"?(\d{1,15})"?\s*$/.exec(header);
  return m?.[1] ? Number(m[1]) : 'invalid';
}

export function etag(revision: number): string {
  return `"${revision}"`;
}
