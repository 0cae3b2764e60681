/** API keys on PostgreSQL (pg or PGlite): sql/api-key-*.sql. */
import type { ApiKeyRecord, ApiKeyStore, Scope } from '../../core/api-keys.js';
import type { SqlDatabase } from './database.js';
import { run, statements } from './sql.js';
import type { Row } from './rows.js';

const SQL = statements('apiKeyInsert', 'apiKeyByPrefix', 'apiKeyList', 'apiKeyRevoke', 'apiKeyCount', 'apiKeyDeleteTenant');

function rowToKey(r: Row): ApiKeyRecord {
  return {
    id: String(r.id),
    tenantId: String(r.tenant_id),
    name: r.name === null ? null : String(r.name),
    prefix: String(r.prefix),
    hash: String(r.hash),
    scopes: r.scopes as Scope[],
    root: r.root === true,
    createdAt: new Date(r.created_at as string).toISOString(),
    revokedAt: r.revoked_at ? new Date(r.revoked_at as string).toISOString() : null,
  };
}

export class PostgresApiKeyStore implements ApiKeyStore {
  constructor(private readonly db: SqlDatabase) {}

  async ready(): Promise<void> {}
  async close(): Promise<void> {}

  async insert(k: Omit<ApiKeyRecord, 'createdAt' | 'revokedAt'>): Promise<ApiKeyRecord> {
    const rows = await run(this.db, SQL.apiKeyInsert, {
      id: k.id,
      tenant: k.tenantId,
      name: k.name,
      prefix: k.prefix,
      hash: k.hash,
      scopes: JSON.stringify(k.scopes),
      root: k.root,
    });
    return rowToKey(rows[0] as Row);
  }

  async findByPrefix(prefix: string): Promise<ApiKeyRecord | null> {
    const [row] = await run(this.db, SQL.apiKeyByPrefix, { prefix });
    return row ? rowToKey(row) : null;
  }

  async list(tenant?: string): Promise<ApiKeyRecord[]> {
    return (await run(this.db, SQL.apiKeyList, { tenant: tenant ?? null })).map(rowToKey);
  }

  async revoke(id: string, tenant?: string): Promise<ApiKeyRecord | null> {
    const [row] = await run(this.db, SQL.apiKeyRevoke, { id, tenant: tenant ?? null });
    return row ? rowToKey(row) : null;
  }

  async deleteTenant(tenant: string): Promise<number> {
    const [row] = await run<{ deleted: number }>(this.db, SQL.apiKeyDeleteTenant, { tenant });
    return Number(row?.deleted ?? 0);
  }

  async count(): Promise<number> {
    const [row] = await run<{ n: number }>(this.db, SQL.apiKeyCount);
    return Number(row?.n ?? 0);
  }
}
