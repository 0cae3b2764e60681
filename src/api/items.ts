/** Conversation history on the wire. */
import { Type, type Static } from 'typebox';
import { MAX_ITEM_CLIENT_ID } from '../core/limits.js';
import { ITEM_ORDERS, type NewItem as CoreNewItem, type SessionItem } from '../core/types.js';
import { Cursor, DateTime, Nullable, PageLimit, StringEnum } from './common.js';

export const Item = Type.Object({
  id: Type.String(),
  seq: Type.Integer(),
  client_id: Nullable(Type.String()),
  role: Nullable(Type.String()),
  type: Type.String(),
  content: Type.Unknown(),
  created_at: DateTime,
});
export type ItemJson = Static<typeof Item>;

export const NewItem = Type.Object(
  {
    client_id: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: MAX_ITEM_CLIENT_ID,
        description:
          'Your id for the item, unique in the session: re-sending it with the same role, type and content answers the stored item; with another body it replaces that item in place (same seq)',
      }),
    ),
    role: Type.Optional(Nullable(Type.String({ minLength: 1, maxLength: 64 }))),
    type: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'Default `message`' })),
    content: Type.Unknown(),
  },
  { additionalProperties: false, required: ['content'] },
);
export type NewItemJson = Static<typeof NewItem>;

export function newItemFromJson(i: NewItemJson): CoreNewItem {
  return { clientId: i.client_id, role: i.role, type: i.type, content: i.content };
}

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
    order: Type.Optional(
      StringEnum(ITEM_ORDERS, {
        description: '`asc` (default) oldest first; `desc` newest first: `?order=desc&limit=N` is the latest N items',
      }),
    ),
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
  return {
    id: i.id,
    seq: i.seq,
    client_id: i.clientId,
    role: i.role,
    type: i.type,
    content: i.content,
    created_at: i.createdAt,
  };
}

