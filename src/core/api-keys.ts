/**
 * API keys: random secrets shown once, stored as SHA-256 with a lookup prefix, compared in
 * constant time. Each key belongs to a tenant and carries scopes.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { ValidationError } from './errors.js';
import type { Lifecycle } from './ports.js';

import { SCOPES, TENANT_RE, type Scope } from './types.js';

export { SCOPES, TENANT_RE, type Scope };

export interface ApiKeyRecord {
  id: string;
  tenantId: string;
  name: string | null;
  prefix: string;
  hash: string;
  scopes: Scope[];
  /** A root admin key manages every tenant's keys; any other admin key only its own tenant's. */
  root: boolean;
  createdAt: string;
  revokedAt: string | null;
}

export interface ApiKeyStore extends Lifecycle {
  insert(record: Omit<ApiKeyRecord, 'createdAt' | 'revokedAt'>): Promise<ApiKeyRecord>;
  findByPrefix(prefix: string): Promise<ApiKeyRecord | null>;
  list(tenant?: string): Promise<ApiKeyRecord[]>;
  /** Revokes the key (of `tenant`, when given); null when there is no such key. */
  revoke(id: string, tenant?: string): Promise<ApiKeyRecord | null>;
  count(): Promise<number>;
  /** Deletes every key of the tenant, revoked ones too (erasure); resolves to how many. */
  deleteTenant(tenant: string): Promise<number>;
}

/** The principal a request acts as. */
export interface Principal {
  keyId: string;
  tenant: string;
  scopes: readonly Scope[];
  /** Manages every tenant's keys (ADMIN_API_KEY, the first-start key, `keys create --root`). */
  root: boolean;
}

const KEY_RE = /^ask_([A-Za-z0-9]{12})_([A-Za-z0-9_-]{43})$/;

export function hashKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

/** A new key: `ask_<12-char lookup prefix>_<256-bit secret>`. */
export function generateKey(): { key: string; prefix: string; hash: string } {
  const prefix = randomBytes(9).toString('base64url').replace(/[-_]/g, 'x').slice(0, 12);
  const key = `ask_${prefix}_${randomBytes(32).toString('base64url')}`;
  return { key, prefix: `ask_${prefix}`, hash: hashKey(key) };
}

/** The lookup prefix of a presented key, or null when it is not shaped like one of ours. */
export function prefixOf(key: string): string | null {
  const m = KEY_RE.exec(key);
  return m ? `ask_${m[1]}` : null;
}

export function hashesEqual(a: string, b: string): boolean {
  const x = Buffer.from(a, 'hex');
  const y = Buffer.from(b, 'hex');
  return x.length === y.length && timingSafeEqual(x, y);
}

export interface CreatedKey {
  record: ApiKeyRecord;
  /** The key itself; shown only here. */
  key: string;
}

export class ApiKeyService {
  private readonly staticHash: string | null;

  constructor(
    private readonly store: ApiKeyStore,
    options: { adminKey?: string | null; newId: () => string },
  ) {
    this.staticHash = options.adminKey ? hashKey(options.adminKey) : null;
    this.newId = options.newId;
  }

  private readonly newId: () => string;

  async create(input: { tenant: string; scopes: Scope[]; name?: string | null; root?: boolean }): Promise<CreatedKey> {
    if (typeof input.tenant !== 'string' || !TENANT_RE.test(input.tenant)) {
      throw new ValidationError('tenant may hold letters, digits and _ . - (1 to 64)', { field: 'tenant' });
    }
    if (!Array.isArray(input.scopes) || input.scopes.length === 0 || input.scopes.some((s) => !SCOPES.includes(s))) {
      throw new ValidationError(`scopes must name at least one of ${SCOPES.join(', ')}`, { field: 'scopes' });
    }
    if (input.name !== undefined && input.name !== null && input.name.length > 200) {
      throw new ValidationError('name is longer than 200 characters', { field: 'name' });
    }
    const root = input.root ?? false;
    if (root && !input.scopes.includes('admin')) {
      throw new ValidationError('a root key needs the admin scope', { field: 'scopes' });
    }
    const { key, prefix, hash } = generateKey();
    const record = await this.store.insert({
      id: this.newId(),
      tenantId: input.tenant,
      name: input.name ?? null,
      prefix,
      hash,
      scopes: [...new Set(input.scopes)],
      root,
    });
    return { record, key };
  }

  list(tenant?: string): Promise<ApiKeyRecord[]> {
    return this.store.list(tenant);
  }

  /** Revokes a key; with `tenant`, only a key of that tenant (another tenant's key is "not found"). */
  revoke(id: string, tenant?: string): Promise<ApiKeyRecord | null> {
    return this.store.revoke(id, tenant);
  }

  /** Deletes every key of `tenant` (tenant erasure): none of them authenticates from the next request. */
  deleteTenant(tenant: string): Promise<number> {
    return this.store.deleteTenant(tenant);
  }

  /** Whether any stored key exists (to decide whether to generate the first one). */
  async hasKeys(): Promise<boolean> {
    return (await this.store.count()) > 0;
  }

  /** The principal for a presented key, or null. Unknown and revoked keys look the same. */
  async authenticate(presented: string): Promise<Principal | null> {
    if (this.staticHash !== null && hashesEqual(hashKey(presented), this.staticHash)) {
      return { keyId: 'admin', tenant: 'default', scopes: SCOPES, root: true };
    }
    const prefix = prefixOf(presented);
    if (prefix === null) return null;
    const record = await this.store.findByPrefix(prefix);
    if (!record || record.revokedAt !== null || !hashesEqual(hashKey(presented), record.hash)) return null;
    return { keyId: record.id, tenant: record.tenantId, scopes: record.scopes, root: record.root };
  }
}
