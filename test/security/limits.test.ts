/** The shared limit helpers other routes adopt, and how their errors leave over HTTP. */
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/internal.js';
import { CapacityError, LimitError } from '../../src/core/errors.js';
import { checkOutputEvent, checkRunsQueued, DEFAULT_LIMITS } from '../../src/core/limits.js';
import { toProblem } from '../../src/server/errors.js';
import { buildApp } from '../../src/server/app.js';
import { createSessions } from '../../src/internal.js';

describe('shared limits', () => {
  it('output events over OUTPUT_EVENT_LIMIT_BYTES are 413 limit_exceeded', () => {
    const limits = { outputEventBytes: 32 };
    // An event that passes comes back as its JSON text (the writer keeps it: serialized once).
    expect(checkOutputEvent(limits, { text: 'short' })).toBe('{"text":"short"}');
    let err: unknown;
    try {
      checkOutputEvent(limits, { text: 'x'.repeat(40) });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(LimitError);
    expect(toProblem(err)).toMatchObject({ status: 413, code: 'limit_exceeded', details: { field: 'data', limit: 32 } });
  });

  it('a full run queue is 429 queue_full', () => {
    const limits = { runsQueuedPerSession: 2 };
    expect(() => checkRunsQueued(limits, 1)).not.toThrow();
    let err: unknown;
    try {
      checkRunsQueued(limits, 2);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CapacityError);
    expect(toProblem(err)).toMatchObject({ status: 429, code: 'queue_full' });
  });

  it('limits come from the environment, validated', () => {
    const config = loadConfig({
      RATE_LIMIT_PER_MINUTE: '0',
      OUTPUT_EVENT_LIMIT_BYTES: '1024',
      RUNS_QUEUED_PER_SESSION: '3',
      SSE_CONNECTIONS_PER_KEY: '4',
    });
    expect(config.rateLimitPerMinute).toBe(0);
    expect(config.limits).toMatchObject({ outputEventBytes: 1024, runsQueuedPerSession: 3, sseConnectionsPerKey: 4 });
    expect(loadConfig({}).rateLimitPerMinute).toBe(6_000);
    expect(loadConfig({}).limits.sseConnectionsPerKey).toBe(DEFAULT_LIMITS.sseConnectionsPerKey);
    expect(() => loadConfig({ RATE_LIMIT_PER_MINUTE: '-1' })).toThrow(/RATE_LIMIT_PER_MINUTE/);
    expect(() => loadConfig({ SSE_CONNECTIONS_PER_KEY: '0' })).toThrow(/SSE_CONNECTIONS_PER_KEY/);
  });
});

describe('client address', { timeout: 60_000 }, () => {
  it('TRUST_PROXY is validated: true/false, a hop count, or addresses', () => {
    expect(loadConfig({}).trustProxy).toBe(false);
    expect(loadConfig({ TRUST_PROXY: 'true' }).trustProxy).toBe(true);
    expect(loadConfig({ TRUST_PROXY: '2' }).trustProxy).toBe(2);
    expect(loadConfig({ TRUST_PROXY: '10.0.0.0/8, 127.0.0.1' }).trustProxy).toBe('10.0.0.0/8,127.0.0.1');
    expect(loadConfig({ TRUST_PROXY: 'loopback,fd00::/8' }).trustProxy).toBe('loopback,fd00::/8');
    for (const bad of ['any proxy please', '1.2.3', ':::', '10.0.0.0/33', '10.0.0.1/8/2']) {
      expect(() => loadConfig({ TRUST_PROXY: bad }), bad).toThrow(/TRUST_PROXY/);
    }
  });

  it('with TRUST_PROXY the wrong-key limit counts the forwarded client, not the proxy', async () => {
    const sessions = await createSessions({ env: { TRUST_PROXY: '127.0.0.1', AUTH_FAILURES_PER_MINUTE: '2' }, dataDir: ':memory:' });
    try {
      const app = await buildApp({ sessions, logger: false });
      const wrong = (client: string) =>
        app.inject({
          method: 'GET',
          url: '/v1/sessions',
          remoteAddress: '127.0.0.1',
          headers: { authorization: 'Bearer ask_wrongwrongwr_' + 'x'.repeat(43), 'x-forwarded-for': client },
        });
      const fromOne = [];
      for (let i = 0; i < 3; i++) fromOne.push((await wrong('203.0.113.7')).statusCode);
      expect(fromOne).toEqual([401, 401, 429]);
      expect((await wrong('203.0.113.8')).statusCode).toBe(401);
      await app.close();
    } finally {
      await sessions.close();
    }
  });
});

describe('page size', { timeout: 60_000 }, () => {
  it('MAX_PAGE_SIZE above the default is honoured over HTTP, and enforced', async () => {
    const sessions = await createSessions({ env: { MAX_PAGE_SIZE: '150' }, dataDir: ':memory:' });
    try {
      const app = await buildApp({ sessions, logger: false, noAuth: true });
      await Promise.all(Array.from({ length: 160 }, () => sessions.create({})));
      const full = await app.inject({ method: 'GET', url: '/v1/sessions?limit=150' });
      expect(full.statusCode).toBe(200);
      expect(full.json<{ sessions: unknown[] }>().sessions).toHaveLength(150);
      const over = await app.inject({ method: 'GET', url: '/v1/sessions?limit=151' });
      expect(over.statusCode).toBe(400);
      expect(over.json()).toMatchObject({ code: 'validation_failed' });
      const items = await app.inject({ method: 'GET', url: `/v1/sessions/${(await sessions.create({})).id}/items?limit=151` });
      expect(items.statusCode).toBe(400);
      await app.close();
    } finally {
      await sessions.close();
    }
  });
});

describe('scope audit', { timeout: 60_000 }, () => {
  it('a /v1 route without a scope fails at registration; every registered /v1 route has one', async () => {
    const sessions = await createSessions({ env: {}, dataDir: ':memory:' });
    try {
      const app = await buildApp({ sessions, logger: false });
      expect(() => app.get('/v1/forgotten', async () => ({}))).toThrow(/needs config.scope/);
      expect(() => app.get('/v1/typo', { config: { scope: 'wrte' as never } }, async () => ({}))).toThrow(/needs config.scope/);
      app.get('/public-thing', async () => ({}));
      await app.ready();
      const v1 = app.apiRoutes.filter((r) => r.url.startsWith('/v1/'));
      expect(v1.length).toBeGreaterThan(0);
      expect(v1.filter((r) => r.scope === undefined)).toEqual([]);
      await app.close();
    } finally {
      await sessions.close();
    }
  });
});
