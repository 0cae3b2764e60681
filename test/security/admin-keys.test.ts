/**
 * /v1/admin/keys: who may manage which keys, the key shown once and never stored, and
 * revocation seen by every instance at its next request.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, freshDatabase, makeKey, startInstance, type Instance, type TestDatabase, requireServices } from './support.js';
import { internals } from '../../src/internal.js';

describe.skipIf(!requireServices(['postgres'], 'security/admin keys'))('admin keys', { timeout: 60_000 }, () => {
  let db: TestDatabase;
  let a: Instance;
  let b: Instance;
  let root: string;
  let acmeAdmin: string;
  let acmeReader: string;

  beforeAll(async () => {
    db = await freshDatabase();
    a = await startInstance(db.url);
    b = await startInstance(db.url);
    root = await makeKey(a.sessions, 'default', ['admin'], true);
    acmeAdmin = await makeKey(a.sessions, 'acme', ['admin']);
    acmeReader = await makeKey(a.sessions, 'acme', ['read']);
  });

  afterAll(async () => {
    await a?.close();
    await b?.close();
    await db?.drop();
  });

  it('creates a key, shows it once, and it works at once on another instance', async () => {
    const res = await call(a.app, root, 'POST', '/v1/admin/keys', { tenant: 'globex', scopes: ['read', 'write'], name: 'ci' });
    expect(res.statusCode).toBe(201);
    expect(res.headers['cache-control']).toBe('no-store');
    const body = res.json();
    expect(body).toMatchObject({ tenant: 'globex', scopes: ['read', 'write'], name: 'ci', root: false, revoked_at: null });
    expect(body.key).toMatch(/^ask_[A-Za-z0-9]{12}_[A-Za-z0-9_-]{43}$/);
    expect(body.key.startsWith(body.prefix)).toBe(true);
    expect(body).not.toHaveProperty('hash');

    const created = await call(b.app, body.key, 'POST', '/v1/sessions', {});
    expect(created.statusCode).toBe(201);
    expect(created.json().tenant_id).toBe('globex');

    const listed = await call(a.app, root, 'GET', '/v1/admin/keys');
    expect(listed.statusCode).toBe(200);
    const keys = listed.json().keys as Array<Record<string, unknown>>;
    const shown = keys.find((k) => k.id === body.id);
    expect(Object.keys(shown ?? {}).sort()).toEqual(['created_at', 'id', 'name', 'prefix', 'revoked_at', 'root', 'scopes', 'tenant']);
    expect(JSON.stringify(keys)).not.toContain(body.key.slice(17));
  });

  it('a key revoked on instance A is refused on instance B at its next request', async () => {
    const made = (await call(a.app, root, 'POST', '/v1/admin/keys', { tenant: 'acme', scopes: ['read'] })).json();
    expect((await call(b.app, made.key, 'GET', '/v1/sessions')).statusCode).toBe(200);
    const revoked = await call(a.app, root, 'DELETE', `/v1/admin/keys/${made.id}`);
    expect(revoked.statusCode).toBe(200);
    expect(revoked.json().revoked_at).not.toBeNull();
    const refused = await call(b.app, made.key, 'GET', '/v1/sessions');
    expect(refused.statusCode).toBe(401);
    expect(refused.json().code).toBe('unauthorized');
    // Revoking again keeps the first revocation time.
    const again = await call(b.app, root, 'DELETE', `/v1/admin/keys/${made.id}`);
    expect(again.json().revoked_at).toBe(revoked.json().revoked_at);
  });

  it('a tenant admin manages only its own tenant: other tenants are forbidden or not found', async () => {
    const own = await call(a.app, acmeAdmin, 'POST', '/v1/admin/keys', { tenant: 'acme', scopes: ['read'] });
    expect(own.statusCode).toBe(201);
    const other = await call(a.app, acmeAdmin, 'POST', '/v1/admin/keys', { tenant: 'globex', scopes: ['admin'] });
    expect(other.statusCode).toBe(403);
    expect(other.json().code).toBe('forbidden');

    const list = (await call(a.app, acmeAdmin, 'GET', '/v1/admin/keys')).json().keys as Array<{ tenant: string }>;
    expect(list.length).toBeGreaterThan(0);
    expect(list.every((k) => k.tenant === 'acme')).toBe(true);
    expect((await call(a.app, acmeAdmin, 'GET', '/v1/admin/keys?tenant=globex')).statusCode).toBe(403);

    const globexKey = (await call(a.app, root, 'POST', '/v1/admin/keys', { tenant: 'globex', scopes: ['read'] })).json();
    const revoke = await call(a.app, acmeAdmin, 'DELETE', `/v1/admin/keys/${globexKey.id}`);
    expect(revoke.statusCode).toBe(404);
    expect(revoke.json().code).toBe('key_not_found');
    expect((await call(b.app, globexKey.key, 'GET', '/v1/sessions')).statusCode).toBe(200);

    const rootList = (await call(a.app, root, 'GET', '/v1/admin/keys?tenant=globex')).json().keys as Array<{ tenant: string }>;
    expect(rootList.length).toBeGreaterThan(0);
    expect(rootList.every((k) => k.tenant === 'globex')).toBe(true);
  });

  it('admin routes need the admin scope; bad input is a 400 with a stable code', async () => {
    expect((await call(a.app, acmeReader, 'GET', '/v1/admin/keys')).json().code).toBe('forbidden');
    expect((await call(a.app, null, 'GET', '/v1/admin/keys')).statusCode).toBe(401);
    for (const body of [
      { tenant: 'acme', scopes: [] },
      { tenant: 'acme', scopes: ['root'] },
      { tenant: 'a b', scopes: ['read'] },
      { tenant: 'acme', scopes: ['read'], root: true },
      { tenant: 'x'.repeat(65), scopes: ['read'] },
    ]) {
      const res = await call(a.app, root, 'POST', '/v1/admin/keys', body);
      expect(res.statusCode, JSON.stringify(body)).toBe(400);
      expect(res.json().code).toBe('validation_failed');
    }
    expect((await call(a.app, root, 'DELETE', '/v1/admin/keys/not-a-uuid')).json().code).toBe('validation_failed');
    expect((await call(a.app, root, 'DELETE', '/v1/admin/keys/00000000-0000-4000-8000-000000000000')).statusCode).toBe(404);
  });

  it('the database holds no plaintext key: every column of every table is searched', async () => {
    const made = (await call(a.app, root, 'POST', '/v1/admin/keys', { tenant: 'acme', scopes: ['read', 'write'] })).json();
    const key = made.key as string;
    // The secret is base64url and may itself hold '_': cut it after the known prefix.
    const secret = key.slice(`${made.prefix as string}_`.length);
    expect(secret).toHaveLength(43);
    await call(a.app, key, 'POST', '/v1/sessions', { metadata: { note: 'hello' } });

    const rows = await internals(a.sessions).db.query<Record<string, unknown>>('SELECT * FROM api_keys WHERE id = $1', [made.id]);
    expect(rows).toHaveLength(1);
    expect(rows[0]?.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(rows[0]?.prefix).toBe(made.prefix);

    const tables = await internals(a.sessions).db.query<{ name: string }>(
      `SELECT quote_ident(table_name) AS name FROM information_schema.tables
       WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'`,
    );
    expect(tables.length).toBeGreaterThanOrEqual(6);
    for (const { name } of tables) {
      const dump = await internals(a.sessions).db.query<{ t: string | null }>(`SELECT string_agg(x::text, E'\\n') AS t FROM ${name} x`);
      const text = dump[0]?.t ?? '';
      expect(text.includes(secret), `table ${name} holds the key's secret`).toBe(false);
      expect(text.includes(key), `table ${name} holds the key`).toBe(false);
    }
  });
});
