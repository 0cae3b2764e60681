/** Conversation history on the wire. */
import { Type, type Static } from 'typebox';
import type { SessionItem } from '../core/types.js';
import { Cursor, DateTime, Nullable, PageLimit } from './common.js';

export const Item = Type.Object({
  id: Type.String(),
  seq: Type.Integer(),
  role: Type.String(),
  type: Type.String(),
  content: Type.Unknown(),
  created_at: DateTime,
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
export type NewItemJson = Static<typeof NewItem>;

export const AppendItemsBody = Type.Object(
  { items: Type.Array(NewItem, { minItems: 1, maxItems: 100 }) },
  { additionalProperties: false },
);
export const AppendItemsResponse = Type.Object({ items: Type.Array(Item), session_version: Type.Integer() });
export type AppendItemsJson = Static<typeof AppendItemsResponse>;

export const ListItemsQuery = Type.Object(
  {
    cursor: Type.Optional(Cursor),
    limit: Type.Optional(PageLimit),
    last_turns: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000 })),
  },
  { additionalProperties: false },
);
export type ListItemsQueryJson = Static<typeof ListItemsQuery>;

export const ItemPage = Type.Object({ items: Type.Array(Item), next_cursor: Nullable(Type.String()) });
export type ItemPageJson = Static<typeof ItemPage>;
export const PopResponse = Type.Object({ item: Nullable(Item), session_version: Type.Integer() });
export type PopJson = Static<typeof PopResponse>;
export const ClearResponse = Type.Object({ removed: Type.Integer(), session_version: Type.Integer() });
export type ClearJson = Static<typeof ClearResponse>;

export function itemJson(i: SessionItem): ItemJson {
  return { id: i.id, seq: i.seq, role: i.role, type: i.type, content: i.content, created_at: i.createdAt };
}

