/**
 * SPEC §15, PostgreSQL down: writes fail fast with 503 (retryable, never acknowledged), the
 * process stays up, /ready says why, and when PostgreSQL returns everything works again with
 * no restart and no acknowledged write lost.
 */
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/server/app.js';
import { createSessions, type Sessions } from '../../src/internal.js';
import { requireServices } from '../setup/harness.js';
import { startRestartablePostgres, type RestartableService } from '../setup/services.js';

const KEY = 'fault-admin-key-0123456789abcdef';
const ready = requireServices(['postgres'], 'faults/postgres-down');

describe.skipIf(!ready)('faults/postgres-down', () => {
  let pg: RestartableService;
  let sessions: Sessions;
  let app: FastifyInstance;
  let base = '';

  const call = async (method: string, url: string, body?: unknown) => {
    const started = performance.now();
    const res = await fetch(`${base}${url}`, {
      method,
      headers: { authorization: `Bearer ${KEY}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return {
      status: res.status,
      retryAfter: res.headers.get('retry-after'),
      body: text ? (JSON.parse(text) as Record<string, unknown>) : {},
      ms: performance.now() - started,
    };
  };

  beforeAll(async () => {
    pg = await startRestartablePostgres();
    sessions = await createSessions({ env: { DATABASE_URL: pg.url, ADMIN_API_KEY: KEY } });
    app = await buildApp({ sessions });
    await app.listen({ port: 0, host: '127.0.0.1' });
    base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await app?.close();
    await sessions?.close();
    await pg?.stop();
  });

  it('answers 503 while PostgreSQL is down and recovers without a restart', async () => {
    const acknowledged: { id: string; version: number }[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await call('POST', '/v1/sessions', { user_id: 'fault', metadata: { i } });
      expect(res.status).toBe(201);
      acknowledged.push({ id: res.body.id as string, version: 1 });
    }
    const first = acknowledged[0] as { id: string; version: number };
    const bumped = await call('POST', `/v1/sessions/${first.id}/counters`, { total_turns: 3 });
    expect(bumped.status).toBe(200);
    first.version = bumped.body.version as number;

    await pg.halt();

    const attempts = [
      await call('POST', '/v1/sessions', { user_id: 'fault', metadata: { lost: true } }),
      await call('PATCH', `/v1/sessions/${first.id}`, { title: 'never acknowledged' }),
      await call('POST', `/v1/sessions/${first.id}/counters`, { total_turns: 100 }),
      await call('GET', `/v1/sessions/${first.id}`),
    ];
    for (const res of attempts) {
      expect(res.status).toBe(503);
      expect(res.body.code).toBe('unavailable');
      expect(res.retryAfter).toBe('1');
      expect(JSON.stringify(res.body)).not.toMatch(/ECONNREFUSED|at \w+ \(|SELECT|UPDATE/);
      // Fails fast: a refused connection, not a hang until some long timeout.
      expect(res.ms).toBeLessThan(8_000);
    }
    const readiness = await call('GET', '/ready');
    expect(readiness.status).toBe(503);
    expect((await call('GET', '/health')).status).toBe(200);

    await pg.resume();

    // The pool reconnects by itself; allow a few retries while it notices.
    let recovered = await call('GET', `/v1/sessions/${first.id}`);
    for (let i = 0; i < 50 && recovered.status !== 200; i++) {
      await new Promise((r) => setTimeout(r, 200));
      recovered = await call('GET', `/v1/sessions/${first.id}`);
    }
    expect(recovered.status).toBe(200);
    expect(recovered.body).toMatchObject({ version: first.version, total_turns: 3, title: null });

    for (const s of acknowledged) expect((await call('GET', `/v1/sessions/${s.id}`)).body.version).toBe(s.version);
    const list = await call('GET', '/v1/sessions?user_id=fault&limit=100');
    expect((list.body.sessions as unknown[]).length).toBe(5);
    expect((await call('POST', '/v1/sessions', { user_id: 'fault' })).status).toBe(201);
    expect((await call('GET', '/ready')).status).toBe(200);
  });
});
