/**
 * Tenant isolation: tenant A's key gets 404 (never 403, never data) for everything of
 * tenant B, batch calls report B's ids as not found, and lists never show B's sessions.
 * Adding a route is one line in ROUTES.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, freshDatabase, makeKey, snapshot, startInstance, type Instance, type TestDatabase, requireServices } from './support.js';

type Method = 'GET' | 'POST' | 'PATCH' | 'DELETE';

/** A request against tenant B's session `id` (and its first item). */
interface Probe {
  name: string;
  method: Method;
  url: (id: string) => string;
  body?: (id: string) => unknown;
  headers?: Record<string, string>;
}

const ROUTES: Probe[] = [
  { name: 'get', method: 'GET', url: (id) => `/v1/sessions/${id}` },
  { name: 'get if-none-match', method: 'GET', url: (id) => `/v1/sessions/${id}`, headers: { 'if-none-match': '"1"' } },
  { name: 'patch', method: 'PATCH', url: (id) => `/v1/sessions/${id}`, body: () => ({ title: 'stolen' }) },
  { name: 'patch if-match', method: 'PATCH', url: (id) => `/v1/sessions/${id}`, body: () => ({ title: 'x' }), headers: { 'if-match': '"2"' } },
  { name: 'touch', method: 'POST', url: (id) => `/v1/sessions/${id}/touch` },
  { name: 'counters', method: 'POST', url: (id) => `/v1/sessions/${id}/counters`, body: () => ({ total_turns: 1 }) },
  { name: 'fork', method: 'POST', url: (id) => `/v1/sessions/${id}/fork`, body: () => ({}) },
  { name: 'terminate', method: 'DELETE', url: (id) => `/v1/sessions/${id}` },
  { name: 'purge', method: 'DELETE', url: (id) => `/v1/sessions/${id}?purge=true` },
  { name: 'items list', method: 'GET', url: (id) => `/v1/sessions/${id}/items` },
  { name: 'items last turns', method: 'GET', url: (id) => `/v1/sessions/${id}/items?last_turns=1` },
  { name: 'items append', method: 'POST', url: (id) => `/v1/sessions/${id}/items`, body: () => ({ items: [{ role: 'user', content: 'x' }] }) },
  { name: 'items pop', method: 'DELETE', url: (id) => `/v1/sessions/${id}/items/last` },
  { name: 'items clear', method: 'DELETE', url: (id) => `/v1/sessions/${id}/items` },
  { name: 'create with B id', method: 'POST', url: () => '/v1/sessions', body: (id) => ({ parent_session_id: id }) },
];

/** Routes where B's id must be reported as not found in a 200 answer. */
const BATCH: Array<{ name: string; url: string; body: (ids: string[]) => unknown; notFound: (json: Record<string, unknown>) => unknown }> = [
  { name: 'batch-get', url: '/v1/sessions:batch-get', body: (ids) => ({ ids }), notFound: (j) => j.not_found },
  { name: 'batch-delete', url: '/v1/sessions:batch-delete', body: (ids) => ({ ids }), notFound: (j) => j.not_found },
  { name: 'batch-delete purge', url: '/v1/sessions:batch-delete', body: (ids) => ({ ids, purge: true }), notFound: (j) => j.not_found },
];

describe.skipIf(!requireServices(['postgres'], 'security/tenant isolation'))('tenant isolation', { timeout: 60_000 }, () => {
  let db: TestDatabase;
  let inst: Instance;
  let keyA: string;
  let adminA: string;
  let keyB: string;
  let sessionB: string;
  let sessionA: string;

  beforeAll(async () => {
    db = await freshDatabase();
    inst = await startInstance(db.url);
    keyA = await makeKey(inst.sessions, 'tenant-a', ['read', 'write', 'runs']);
    adminA = await makeKey(inst.sessions, 'tenant-a', ['admin']);
    keyB = await makeKey(inst.sessions, 'tenant-b', ['read', 'write', 'runs']);
    sessionB = (await call(inst.app, keyB, 'POST', '/v1/sessions', { user_id: 'bob', metadata: { secret: 'b' } })).json().id;
    await call(inst.app, keyB, 'POST', `/v1/sessions/${sessionB}/items`, { items: [{ role: 'user', content: 'b-secret' }] });
    sessionA = (await call(inst.app, keyA, 'POST', '/v1/sessions', { user_id: 'bob' })).json().id;
  });

  afterAll(async () => {
    await inst?.close();
    await db?.drop();
  });

  for (const probe of ROUTES) {
    it(`${probe.name}: another tenant's session is a 404 and nothing changes`, async () => {
      for (const key of [keyA, adminA]) {
        const before = await snapshot(inst.sessions);
        const res = await call(inst.app, key, probe.method, probe.url(sessionB), probe.body?.(sessionB), probe.headers);
        expect(res.statusCode, res.body).toBe(404);
        expect(res.headers['content-type']).toContain('application/problem+json');
        expect(res.json().code).toMatch(/_not_found$/);
        expect(res.body).not.toContain('b-secret');
        expect(res.body).not.toContain('tenant-b');
        expect(await snapshot(inst.sessions)).toEqual(before);
      }
    });
  }

  for (const batch of BATCH) {
    it(`${batch.name}: another tenant's ids are reported not found and left alone`, async () => {
      const before = await snapshot(inst.sessions);
      const res = await call(inst.app, keyA, 'POST', batch.url, batch.body([sessionB]));
      expect(res.statusCode, res.body).toBe(200);
      expect(batch.notFound(res.json())).toEqual([sessionB]);
      expect(res.body).not.toContain('tenant-b');
      expect(await snapshot(inst.sessions)).toEqual(before);
    });
  }

  it('list never shows another tenant\'s sessions, whatever the filter', async () => {
    for (const query of ['', '?user_id=bob', '?limit=100', '?status=idle', '?status=initializing']) {
      const res = await call(inst.app, keyA, 'GET', `/v1/sessions${query}`);
      expect(res.statusCode).toBe(200);
      const ids = (res.json().sessions as Array<{ id: string; tenant_id: string }>).map((s) => s.id);
      expect(ids).not.toContain(sessionB);
      expect(res.body).not.toContain('tenant-b');
    }
    const mine = await call(inst.app, keyA, 'GET', '/v1/sessions?user_id=bob');
    expect((mine.json().sessions as Array<{ id: string }>).map((s) => s.id)).toEqual([sessionA]);
  });

  it("B's session is untouched and still B's", async () => {
    const res = await call(inst.app, keyB, 'GET', `/v1/sessions/${sessionB}`);
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ tenant_id: 'tenant-b', version: 2, title: null, status: 'idle' });
    const items = await call(inst.app, keyB, 'GET', `/v1/sessions/${sessionB}/items`);
    expect(items.json().items).toHaveLength(1);
  });

  it("an id another tenant holds is free in this tenant: POST and PUT make this tenant's own session, B's is untouched", async () => {
    const before = await call(inst.app, keyB, 'GET', `/v1/sessions/${sessionB}`);
    const put = await call(inst.app, keyA, 'PUT', `/v1/sessions/${sessionB}`, { title: 'mine' });
    expect(put.statusCode).toBe(201);
    expect(put.json()).toMatchObject({ id: sessionB, tenant_id: 'tenant-a', title: 'mine', version: 1 });
    expect(put.body).not.toContain('b-secret');
    const again = await call(inst.app, keyA, 'PUT', `/v1/sessions/${sessionB}`, { title: 'ignored' });
    expect(again.statusCode).toBe(200);
    expect(again.json()).toMatchObject({ tenant_id: 'tenant-a', title: 'mine' });
    const post = await call(inst.app, keyA, 'POST', '/v1/sessions', { id: sessionB });
    expect(post.statusCode).toBe(409);
    expect(post.json().code).toBe('session_exists');
    expect((await call(inst.app, keyA, 'GET', `/v1/sessions/${sessionB}/items`)).json().items).toEqual([]);
    const after = await call(inst.app, keyB, 'GET', `/v1/sessions/${sessionB}`);
    expect(after.json()).toEqual(before.json());
    await call(inst.app, keyA, 'DELETE', `/v1/sessions/${sessionB}?purge=true`);
    expect((await call(inst.app, keyB, 'GET', `/v1/sessions/${sessionB}`)).statusCode).toBe(200);
  });
});
