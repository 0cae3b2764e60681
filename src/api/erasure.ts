/** Erasure on the wire (`DELETE /v1/admin/users/{user_id}`, `DELETE /v1/admin/tenants/{tenant}`, admin scope). */
import { Type, type Static } from 'typebox';
import type { ErasureResult } from '../core/erasure.js';
import { Tenant } from './keys.js';

export const EraseUserParams = Type.Object(
  { user_id: Type.String({ minLength: 1, maxLength: 200, description: 'The user whose sessions are erased (a longer id: the library or the CLI)' }) },
  { additionalProperties: false },
);
export const EraseUserQuery = Type.Object(
  { tenant: Type.Optional(Tenant) },
  { additionalProperties: false, description: "The user's tenant: the key's own when not given" },
);
export const EraseTenantParams = Type.Object({ tenant: Tenant }, { additionalProperties: false });

const Count = Type.Integer({ minimum: 0 });
export const Erased = Type.Object(
  {
    sessions: Count,
    items: Count,
    runs: Count,
    output_events: Count,
    outbox: Type.Integer({ minimum: 0, description: 'Events (published or pending) deleted because they named erased data' }),
    keys: Type.Integer({ minimum: 0, description: 'API keys deleted (tenant erasure only)' }),
  },
  { description: 'Rows deleted' },
);
export type ErasedJson = Static<typeof Erased>;

export function erasedJson(r: ErasureResult): ErasedJson {
  return { sessions: r.sessions, items: r.items, runs: r.runs, output_events: r.outputEvents, outbox: r.outbox, keys: r.keys };
}
