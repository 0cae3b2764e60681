/**
 * `agent-sessions keys create|list|revoke` as data: one request type that the CLI either runs
 * itself (it opened the database) or sends to the server holding the embedded data directory
 * through its control socket (src/adapters/postgres/directory-lock.ts), which runs it with
 * its own key service. Either way the same code makes the answer.
 */
import type { ApiKeyRecord, ApiKeyService, Scope } from '../core/api-keys.js';
import { ValidationError } from '../core/errors.js';
import { isUuid } from '../core/ids.js';
import type { ControlRequest } from '../adapters/postgres/directory-lock.js';

export const KEY_OPERATIONS = ['keys.create', 'keys.list', 'keys.revoke'] as const;

export type KeyRequest =
  | { op: 'keys.create'; tenant: string; scopes: Scope[]; name: string | null; root: boolean }
  | { op: 'keys.list'; tenant: string | null }
  | { op: 'keys.revoke'; id: string };

/** A stored key as the CLI shows it: everything but the hash. */
export type ShownKey = Omit<ApiKeyRecord, 'hash'>;

export type KeyResult =
  | { op: 'keys.create'; id: string; key: string; tenant: string; scopes: Scope[]; name: string | null; root: boolean }
  | { op: 'keys.list'; keys: ShownKey[] }
  | { op: 'keys.revoke'; id: string; revoked: ShownKey | null };

const shown = ({ hash: _hash, ...rest }: ApiKeyRecord): ShownKey => rest;

/** Checks a request that came over the control socket (the CLI's own are built typed). */
export function parseKeyRequest(raw: ControlRequest): KeyRequest {
  const str = (v: unknown) => (typeof v === 'string' ? v : null);
  switch (raw.op) {
    case 'keys.create':
      if (!Array.isArray(raw.scopes)) throw new ValidationError('scopes must be a list');
      return {
        op: raw.op,
        tenant: str(raw.tenant) ?? '',
        scopes: raw.scopes as Scope[],
        name: str(raw.name),
        root: raw.root === true,
      };
    case 'keys.list':
      return { op: raw.op, tenant: str(raw.tenant) };
    case 'keys.revoke': {
      const id = str(raw.id);
      if (id === null || !isUuid(id)) throw new ValidationError('keys.revoke needs a key id (UUID)');
      return { op: raw.op, id };
    }
    default:
      throw new ValidationError(`unknown operation ${raw.op}`);
  }
}

export async function runKeyRequest(apiKeys: ApiKeyService, request: KeyRequest): Promise<KeyResult> {
  switch (request.op) {
    case 'keys.create': {
      const { record, key } = await apiKeys.create(request);
      return { op: request.op, id: record.id, key, tenant: record.tenantId, scopes: record.scopes, name: record.name, root: record.root };
    }
    case 'keys.list':
      return { op: request.op, keys: (await apiKeys.list(request.tenant ?? undefined)).map(shown) };
    case 'keys.revoke': {
      const record = await apiKeys.revoke(request.id);
      return { op: request.op, id: request.id, revoked: record ? shown(record) : null };
    }
  }
}
