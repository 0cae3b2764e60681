/**
 * JSON schemas of the HTTP API (TypeBox). They validate requests, shape responses (fields
 * not listed never leave the server) and generate the OpenAPI document.
 */
import { Type, type Static } from 'typebox';
import { PAGE_SIZE_CEILING } from '../core/limits.js';

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) => Type.Union([t, Type.Null()]);

export const SessionId = Type.String({ format: 'uuid', description: 'Session id (UUID)' });
export const SessionIdParams = Type.Object({ id: SessionId }, { additionalProperties: false });
export const Status = Type.Union([
  Type.Literal('initializing'),
  Type.Literal('active'),
  Type.Literal('idle'),
  Type.Literal('waiting_input'),
  Type.Literal('terminated'),
  Type.Literal('failed'),
  Type.Literal('expired'),
]);

const Text = (maxLength = 1024) => Type.String({ maxLength });
const Seconds = Type.Integer({ minimum: 1, maximum: 2_147_483_647 });
const Metadata = Type.Record(Type.String(), Type.Unknown(), { description: 'Free-form JSON object, size-capped' });

export const Session = Type.Object({
  id: Type.String(),
  tenant_id: Type.String(),
  version: Type.Integer(),
  status: Status,
  user_id: Nullable(Type.String()),
  org_id: Nullable(Type.String()),
  model: Nullable(Type.String()),
  title: Nullable(Type.String()),
  system_prompt: Nullable(Type.String()),
  workspace_path: Nullable(Type.String()),
  mcp_client_ids: Type.Array(Type.String()),
  parent_session_id: Nullable(Type.String()),
  metadata: Type.Object({}, { additionalProperties: true }),
  total_turns: Type.Integer(),
  message_count: Type.Integer(),
  total_cost_usd: Type.Number(),
  input_tokens: Type.Integer(),
  output_tokens: Type.Integer(),
  ttl_seconds: Nullable(Type.Integer()),
  idle_timeout_seconds: Nullable(Type.Integer()),
  created_at: Type.String({ format: 'date-time' }),
  updated_at: Type.String({ format: 'date-time' }),
  last_active_at: Type.String({ format: 'date-time' }),
  expires_at: Nullable(Type.String({ format: 'date-time' })),
  ended_at: Nullable(Type.String({ format: 'date-time' })),
  end_reason: Nullable(Type.String()),
});
export type SessionJson = Static<typeof Session>;

export const CreateSessionBody = Type.Object(
  {
    id: Type.Optional(SessionId),
    user_id: Type.Optional(Nullable(Text())),
    org_id: Type.Optional(Nullable(Text())),
    status: Type.Optional(Type.Union([Type.Literal('initializing'), Type.Literal('idle')])),
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

const Count = Type.Integer({ minimum: 0, maximum: 1_000_000_000 });
export const CountersBody = Type.Object(
  {
    total_turns: Type.Optional(Count),
    message_count: Type.Optional(Count),
    total_cost_usd: Type.Optional(Type.Number({ minimum: 0, maximum: 1_000_000_000 })),
    input_tokens: Type.Optional(Count),
    output_tokens: Type.Optional(Count),
  },
  { additionalProperties: false, minProperties: 1 },
);

export const ListSessionsQuery = Type.Object(
  {
    user_id: Type.Optional(Text()),
    status: Type.Optional(Status),
    updated_after: Type.Optional(Type.String({ format: 'date-time' })),
    cursor: Type.Optional(Type.String({ maxLength: 512 })),
    // The configured MAX_PAGE_SIZE is enforced by the service (400 validation_failed).
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: PAGE_SIZE_CEILING })),
  },
  { additionalProperties: false },
);

export const SessionPage = Type.Object({ sessions: Type.Array(Session), next_cursor: Nullable(Type.String()) });

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
export const BatchDeleteBody = Type.Object(
  { ids: BatchIds, purge: Type.Optional(Type.Boolean()), reason: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })) },
  { additionalProperties: false },
);
export const BatchDeleteResponse = Type.Object({ deleted: Type.Array(Type.String()), not_found: Type.Array(Type.String()) });

export const Item = Type.Object({
  id: Type.String(),
  seq: Type.Integer(),
  role: Type.String(),
  type: Type.String(),
  content: Type.Unknown(),
  created_at: Type.String({ format: 'date-time' }),
});
export type ItemJson = Static<typeof Item>;

export const NewItem = Type.Object(
  {
    role: Type.String({ minLength: 1, maxLength: 64 }),
    type: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    content: Type.Unknown(),
  },
  { additionalProperties: false, required: ['role', 'content'] },
);
export const AppendItemsBody = Type.Object(
  { items: Type.Array(NewItem, { minItems: 1, maxItems: 100 }) },
  { additionalProperties: false },
);
export const AppendItemsResponse = Type.Object({ items: Type.Array(Item), session_version: Type.Integer() });
export const ListItemsQuery = Type.Object(
  {
    cursor: Type.Optional(Type.String({ maxLength: 512 })),
    // The configured MAX_PAGE_SIZE is enforced by the service (400 validation_failed).
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: PAGE_SIZE_CEILING })),
    last_turns: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000 })),
  },
  { additionalProperties: false },
);
export const ItemPage = Type.Object({ items: Type.Array(Item), next_cursor: Nullable(Type.String()) });
export const PopResponse = Type.Object({ item: Nullable(Item), session_version: Type.Integer() });
export const ClearResponse = Type.Object({ removed: Type.Integer(), session_version: Type.Integer() });

export const Problem = Type.Object(
  {
    type: Type.String(),
    title: Type.String(),
    status: Type.Integer(),
    code: Type.String(),
    detail: Type.Optional(Type.String()),
    errors: Type.Optional(Type.Array(Type.Object({}, { additionalProperties: true }))),
  },
  { additionalProperties: true },
);

/** The request and response bodies as TypeScript types (the HTTP client uses them). */
export type CreateSessionJson = Static<typeof CreateSessionBody>;
export type UpdateSessionJson = Static<typeof UpdateSessionBody>;
export type ForkSessionJson = Static<typeof ForkBody>;
export type CountersJson = Static<typeof CountersBody>;
export type ListSessionsQueryJson = Static<typeof ListSessionsQuery>;
export type SessionPageJson = Static<typeof SessionPage>;
export type BatchGetJson = Static<typeof BatchGetResponse>;
export type BatchDeleteJson = Static<typeof BatchDeleteResponse>;
export type NewItemJson = Static<typeof NewItem>;
export type AppendItemsJson = Static<typeof AppendItemsResponse>;
export type ListItemsQueryJson = Static<typeof ListItemsQuery>;
export type ItemPageJson = Static<typeof ItemPage>;
export type PopJson = Static<typeof PopResponse>;
export type ClearJson = Static<typeof ClearResponse>;
export type ProblemJson = Static<typeof Problem>;

export const IfMatchHeaders = Type.Object({ 'if-match': Type.Optional(Type.String({ maxLength: 64 })) });
