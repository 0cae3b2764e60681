/**
 * Every error path answers application/problem+json with a stable code, and nothing
 * internal (stack, SQL, driver message) leaves the server. Every size and count limit is a
 * 4xx with its own code.
 */
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS } from '../../src/core/limits.js';
import { createSessions, internals } from '../../src/internal.js';
import { buildApp } from '../../src/server/app.js';
import { call, freshDatabase, makeKey, startInstance, type Instance, type TestDatabase, requireServices } from './support.js';

function expectProblem(res: { statusCode: number; headers: Record<string, unknown>; json(): Record<string, unknown>; body: string }, status: number, code: string): void {
  expect(res.statusCode, res.body).toBe(status);
  expect(String(res.headers['content-type'])).toContain('application/problem+json');
  const body = res.json();
  expect(body.code).toBe(code);
  expect(body.status).toBe(status);
  expect(res.body).not.toMatch(/\bat .+\.(ts|js):\d+|SELECT|INSERT|UPDATE |sessions_pkey|ECONNREFUSED|node_modules/);
}

describe.skipIf(!requireServices(['postgres'], 'security/error responses'))('error responses', { timeout: 60_000 }, () => {
  let db: TestDatabase;
  let inst: Instance;
  let key: string;
  let id: string;

  beforeAll(async () => {
    db = await freshDatabase();
    inst = await startInstance(db.url, {
      bodyLimitBytes: 64 * 1024,
      limits: { ...DEFAULT_LIMITS, metadataBytes: 256, itemBytes: 512, batchSize: 100 },
    });
    key = await makeKey(inst.sessions, 'acme', ['read', 'write']);
    id = (await call(inst.app, key, 'POST', '/v1/sessions', {})).json().id;
  });

  afterAll(async () => {
    await inst?.close();
    await db?.drop();
  });

  it('size and count limits: each a 4xx with a stable code', async () => {
    const big = 'x'.repeat(70 * 1024);
    expectProblem(await call(inst.app, key, 'POST', '/v1/sessions', { title: 'a', metadata: { big } }), 413, 'payload_too_large');
    expectProblem(await call(inst.app, key, 'POST', '/v1/sessions', { metadata: { v: 'x'.repeat(300) } }), 413, 'limit_exceeded');
    expectProblem(await call(inst.app, key, 'PATCH', `/v1/sessions/${id}`, { metadata: { v: 'x'.repeat(300) } }), 413, 'limit_exceeded');
    expectProblem(
      await call(inst.app, key, 'POST', `/v1/sessions/${id}/items`, { items: [{ role: 'user', content: 'x'.repeat(600) }] }),
      413,
      'limit_exceeded',
    );
    const many = Array.from({ length: 101 }, () => ({ role: 'user', content: 'x' }));
    expectProblem(await call(inst.app, key, 'POST', `/v1/sessions/${id}/items`, { items: many }), 400, 'validation_failed');
    expectProblem(await call(inst.app, key, 'GET', '/v1/sessions?limit=101'), 400, 'validation_failed');
    expectProblem(await call(inst.app, key, 'GET', `/v1/sessions/${id}/items?limit=0`), 400, 'validation_failed');
    const ids = Array.from({ length: 101 }, () => id);
    expectProblem(await call(inst.app, key, 'POST', '/v1/sessions:batch-get', { ids }), 400, 'validation_failed');
    expectProblem(await call(inst.app, key, 'POST', '/v1/sessions', { title: 'x'.repeat(1025) }), 400, 'validation_failed');
  });

  it('malformed requests: stable codes', async () => {
    const raw = (payload: string, contentType = 'application/json') =>
      inst.app.inject({ method: 'POST', url: '/v1/sessions', payload, headers: { authorization: `Bearer ${key}`, 'content-type': contentType } });
    expectProblem(await raw('{"title":'), 400, 'malformed_json');
    expectProblem(await raw('{"__proto__":{"x":1}}'), 400, 'malformed_json');
    expectProblem(await raw('title=x', 'application/x-www-form-urlencoded'), 415, 'unsupported_media_type');
    expectProblem(await call(inst.app, key, 'GET', '/v1/nope'), 404, 'route_not_found');
    expectProblem(await call(inst.app, key, 'GET', '/v1/sessions/%E0%A4%A'), 400, 'malformed_request');
    expectProblem(await call(inst.app, key, 'PATCH', `/v1/sessions/${id}`, { title: 'x' }, { 'if-match': 'nope' }), 400, 'validation_failed');
    expectProblem(await call(inst.app, 'ask_AAAAAAAAAAAA_' + 'A'.repeat(43), 'GET', '/v1/sessions'), 401, 'unauthorized');
    expectProblem(await call(inst.app, null, 'GET', '/v1/sessions', undefined, { authorization: 'Basic Zm9vOmJhcg==' }), 401, 'unauthorized');
  });

  it('a thrown non-library error is a 500 internal_error with a generic message', async () => {
    const original = inst.sessions.get.bind(inst.sessions);
    inst.sessions.get = async () => {
      throw new Error('relation "sessions" does not exist: SELECT * FROM sessions WHERE id = $1');
    };
    try {
      const res = await call(inst.app, key, 'GET', `/v1/sessions/${id}`);
      expectProblem(res, 500, 'internal_error');
      expect(res.json().detail).toBe('the server failed to handle this request');
      expect(res.body).not.toContain('relation');
    } finally {
      inst.sessions.get = original;
    }
  });

  it('the log line of a failed request names tenant, key id, route and session, never the key', async () => {
    const lines: string[] = [];
    const logger = pino({ level: 'error' }, new Writable({ write: (chunk, _enc, done) => (lines.push(String(chunk)), done()) }));
    const app = await buildApp({ sessions: inst.sessions, logger });
    const original = inst.sessions.get.bind(inst.sessions);
    inst.sessions.get = async () => {
      throw new Error('boom');
    };
    try {
      expectProblem(await call(app, key, 'GET', `/v1/sessions/${id}`), 500, 'internal_error');
      const entry = JSON.parse(lines.find((l) => l.includes('request failed')) ?? '{}') as Record<string, unknown>;
      expect(entry).toMatchObject({ tenant_id: 'acme', session_id: id, route: '/v1/sessions/:id', msg: 'request failed' });
      expect(typeof entry.key_id).toBe('string');
      expect(lines.join('')).not.toContain(key);
    } finally {
      inst.sessions.get = original;
      await app.close();
    }
  });

  it('a closed database is a 503 unavailable with Retry-After and no internals (PostgreSQL and PGlite)', async () => {
    const other = await freshDatabase();
    const pgSessions = await createSessions({ env: {}, databaseUrl: other.url });
    const pgliteSessions = await createSessions({ env: {}, dataDir: ':memory:' });
    try {
      for (const sessions of [pgSessions, pgliteSessions]) {
        const k = await makeKey(sessions, 'acme', ['read', 'write']);
        const app = await buildApp({ sessions, logger: false });
        await internals(sessions).db.close();
        for (const [method, url, body] of [
          ['GET', '/v1/sessions', undefined],
          ['POST', '/v1/sessions', {}],
          ['GET', `/v1/sessions/${id}`, undefined],
        ] as const) {
          const res = await call(app, k, method, url, body);
          expectProblem(res, 503, 'unavailable');
          expect(res.headers['retry-after']).toBe('1');
        }
        await app.close();
      }
    } finally {
      await pgSessions.close();
      await pgliteSessions.close();
      await other.drop();
    }
  });
});
