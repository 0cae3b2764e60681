import type { ApiKeyRecord, ApiKeyStore, Scope } from '../../core/api-keys.js';
import type { SqlDatabase } from './database.js';

type Row = Record<string, unknown>;

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
    const rows = await this.db.query<Row>(
      `INSERT INTO api_keys (id, tenant_id, name, prefix, hash, scopes, root)
       VALUES ($1, $2, $3, $4, $5, ARRAY(SELECT jsonb_array_elements_text($6::jsonb)), $7) RETURNING *`,
      [k.id, k.tenantId, k.name, k.prefix, k.hash, JSON.stringify(k.scopes), k.root],
    );
    return rowToKey(rows[0] as Row);
  }

  async findByPrefix(prefix: string): Promise<ApiKeyRecord | null> {
    const rows = await this.db.query<Row>('SELECT * FROM api_keys WHERE prefix = $1', [prefix]);
    return rows[0] ? rowToKey(rows[0]) : null;
  }

  async list(tenant?: string): Promise<ApiKeyRecord[]> {
    const rows = await this.db.query<Row>(
      'SELECT * FROM api_keys WHERE $1::text IS NULL OR tenant_id = $1 ORDER BY created_at, id',
      [tenant ?? null],
    );
    return rows.map(rowToKey);
  }

  async revoke(id: string, tenant?: string): Promise<ApiKeyRecord | null> {
    // Revoking twice keeps the first time; the row is only written when it changes.
    const rows = await this.db.query<Row>(
      `WITH target AS (SELECT * FROM api_keys WHERE id = $1 AND ($2::text IS NULL OR tenant_id = $2)),
            revoked AS (UPDATE api_keys k SET revoked_at = now() FROM target
                        WHERE k.id = target.id AND target.revoked_at IS NULL RETURNING k.*)
       SELECT * FROM revoked UNION ALL SELECT * FROM target WHERE revoked_at IS NOT NULL`,
      [id, tenant ?? null],
    );
    return rows[0] ? rowToKey(rows[0]) : null;
  }

  async count(): Promise<number> {
    const rows = await this.db.query<{ n: number }>('SELECT count(*)::int AS n FROM api_keys');
    return Number(rows[0]?.n ?? 0);
  }
}
