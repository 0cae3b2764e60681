/** API keys on the wire (`/v1/admin/keys`, admin scope). The key itself appears only in the create answer. */
import { Type, type Static } from 'typebox';
import type { ApiKeyRecord } from '../core/api-keys.js';
import { SCOPES, TENANT_PATTERN } from '../core/types.js';
import { DateTime, Nullable, StringEnum } from './common.js';

export const Scope = StringEnum(SCOPES);
export const Tenant = Type.String({ pattern: TENANT_PATTERN, description: 'Tenant name: letters, digits, _ . - (1 to 64)' });

export const CreateKeyBody = Type.Object(
  {
    tenant: Tenant,
    scopes: Type.Array(Scope, { minItems: 1, maxItems: SCOPES.length, uniqueItems: true }),
    name: Type.Optional(Nullable(Type.String({ maxLength: 200 }))),
  },
  { additionalProperties: false },
);
export type CreateKeyJson = Static<typeof CreateKeyBody>;

const KeyFields = {
  id: Type.String(),
  tenant: Type.String(),
  scopes: Type.Array(Type.String()),
  name: Nullable(Type.String()),
  prefix: Type.String(),
  root: Type.Boolean(),
  created_at: DateTime,
  revoked_at: Nullable(DateTime),
};
// The hash is not in the response schema, so it can never leave the server.
export const Key = Type.Object(KeyFields);
export type ApiKeyJson = Static<typeof Key>;
export const CreatedKey = Type.Object({ ...KeyFields, key: Type.String({ description: 'The key itself: shown only in this response' }) });
export type CreatedKeyJson = Static<typeof CreatedKey>;
export const KeyList = Type.Object({ keys: Type.Array(Key) });
export type KeyListJson = Static<typeof KeyList>;
export const KeyIdParams = Type.Object({ id: Type.String({ format: 'uuid' }) }, { additionalProperties: false });
export const ListKeysQuery = Type.Object({ tenant: Type.Optional(Tenant) }, { additionalProperties: false });

export function keyJson(k: ApiKeyRecord): ApiKeyJson {
  return {
    id: k.id,
    tenant: k.tenantId,
    scopes: k.scopes,
    name: k.name,
    prefix: k.prefix,
    root: k.root,
    created_at: k.createdAt,
    revoked_at: k.revokedAt,
  };
}
