/**
 * Per-key rate limits and SSE connection slots: in-process, shared by two instances
 * through Redis, and failing open when Redis is unreachable.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS } from '../../src/core/limits.js';
import { InProcessConnectionLimiter, InProcessRateLimiter } from '../../src/core/rate-limit.js';
import { createRedisConnection, RedisKeys } from '../../src/adapters/redis/connection.js';
import { RedisConnectionLimiter } from '../../src/adapters/redis/redis-limiters.js';
import { createSessions, internals } from '../../src/internal.js';
import { buildApp } from '../../src/server/app.js';
import { holdConnectionSlot } from '../../src/server/limits.js';
import { clientAddress } from '../../src/server/auth.js';
import { call, freshDatabase, makeKey, requireServices, serviceUrl, startInstance, uniqueKeyPrefix, type TestDatabase } from './support.js';
import { waitFor } from '../runs/support.js';

const hasPostgres = requireServices(['postgres'], 'security/rate limits');
const hasRedis = hasPostgres && requireServices(['redis'], 'security/rate limits shared through Redis');

describe('in-process limiters', () => {
  it('a fixed window: the limit, then refusals, then a fresh window', async () => {
    let now = 1_000_000;
    const limiter = new InProcessRateLimiter(3, 60_000, { now: () => now });
    const seen = [];
    for (let i = 0; i < 5; i++) seen.push(limiter.consumeNow('k'));
    expect(seen.map((d) => d.allowed)).toEqual([true, true, true, false, false]);
    expect(seen.map((d) => d.remaining)).toEqual([2, 1, 0, 0, 0]);
    expect(limiter.consumeNow('other').allowed).toBe(true);
    now += 30_000;
    expect(limiter.consumeNow('k')).toMatchObject({ allowed: false, resetMs: 30_000 });
    now += 30_000;
    expect(limiter.consumeNow('k')).toMatchObject({ allowed: true, remaining: 2, resetMs: 60_000 });
  });

  it('a flood of distinct keys past the bound evicts the oldest windows first', () => {
    const limiter = new InProcessRateLimiter(2, 60_000, { now: () => 0 }, 4);
    for (const key of ['a', 'b', 'c', 'd']) limiter.consumeNow(key);
    expect(limiter.consumeNow('a').remaining).toBe(0);
    limiter.consumeNow('e'); // evicts a, the oldest window
    expect(limiter.consumeNow('a').remaining).toBe(1); // a new window (evicts b)
    expect(limiter.consumeNow('c').remaining).toBe(0); // c kept its window
    expect(limiter.consumeNow('b').remaining).toBe(1); // b was evicted (evicts d)
    // Rounds over more keys than the bound: each is evicted before it comes back.
    for (let i = 0; i < 1_000; i++) expect(limiter.consumeNow(`k${i % 9}`).remaining, `call ${i}`).toBe(1);
    // The last four (calls 996 to 999) are the ones tracked.
    for (const key of ['k6', 'k7', 'k8', 'k0']) expect(limiter.consumeNow(key).remaining).toBe(0);
  });

  it('connection slots: at most the limit per key, released once', () => {
    const limiter = new InProcessConnectionLimiter(2);
    const a = limiter.acquireNow('k');
    const b = limiter.acquireNow('k');
    expect(limiter.acquireNow('k')).toBeNull();
    expect(limiter.acquireNow('other')).not.toBeNull();
    a?.release();
    a?.release();
    expect(limiter.held()).toBe(2);
    expect(limiter.acquireNow('k')).not.toBeNull();
    expect(limiter.acquireNow('k')).toBeNull();
    b?.release();
  });
});

describe.skipIf(!hasPostgres)('HTTP rate limit', { timeout: 60_000 }, () => {
  let db: TestDatabase;

  beforeAll(async () => {
    db = await freshDatabase();
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('429 rate_limited with Retry-After and RateLimit headers; per key; public routes not counted', async () => {
    const inst = await startInstance(db.url, { rateLimitPerMinute: 3 });
    try {
      const k1 = await makeKey(inst.sessions, 'acme', ['read']);
      const k2 = await makeKey(inst.sessions, 'acme', ['read']);
      for (let i = 0; i < 5; i++) expect((await inst.app.inject({ method: 'GET', url: '/health' })).statusCode).toBe(200);
      const statuses = [];
      for (let i = 0; i < 3; i++) {
        const res = await call(inst.app, k1, 'GET', '/v1/sessions');
        statuses.push(res.statusCode);
        expect(res.headers['ratelimit-limit']).toBe('3');
        expect(res.headers['ratelimit-remaining']).toBe(String(2 - i));
      }
      expect(statuses).toEqual([200, 200, 200]);
      const refused = await call(inst.app, k1, 'GET', '/v1/sessions');
      expect(refused.statusCode).toBe(429);
      expect(refused.headers['content-type']).toContain('application/problem+json');
      expect(refused.json().code).toBe('rate_limited');
      const retry = Number(refused.headers['retry-after']);
      expect(retry).toBeGreaterThanOrEqual(1);
      expect(retry).toBeLessThanOrEqual(60);
      expect(refused.headers['ratelimit-remaining']).toBe('0');
      expect(refused.headers['ratelimit-policy']).toBe('3;w=60');
      expect((await call(inst.app, k2, 'GET', '/v1/sessions')).statusCode).toBe(200);
    } finally {
      await inst.close();
    }
  });

  it('client addresses: IPv4 as is, IPv6 by its /64', () => {
    expect(clientAddress('10.1.2.3')).toBe('10.1.2.3');
    expect(clientAddress('::ffff:10.1.2.3')).toBe('10.1.2.3');
    expect(clientAddress('2001:db8:1:2::5')).toBe('2001:db8:1:2::/64');
    expect(clientAddress('2001:0db8:0001:0002:aaaa:bbbb:cccc:dddd')).toBe('2001:db8:1:2::/64');
    expect(clientAddress('::1')).toBe('0:0:0:0::/64');
    expect(clientAddress('fe80::1')).toBe('fe80:0:0:0::/64');
  });

  it('wrong keys: an address over AUTH_FAILURES_PER_MINUTE gets 429 for wrong keys; right keys still pass', async () => {
    const inst = await startInstance(db.url, { authFailuresPerMinute: 3 });
    try {
      const good = await makeKey(inst.sessions, 'acme', ['read']);
      const wrong = `${good.slice(0, -4)}zzzz`;
      const from = (address: string) => ({ remoteAddress: address });
      const get = (key: string | null, address: string) =>
        inst.app.inject({ method: 'GET', url: '/v1/sessions', ...from(address), headers: key === null ? {} : { authorization: `Bearer ${key}` } });
      // A missing key is not a guess: never counted.
      for (let i = 0; i < 5; i++) expect((await get(null, '10.0.0.1')).statusCode).toBe(401);
      expect((await get(good, '10.0.0.1')).statusCode).toBe(200);
      const statuses = [];
      for (let i = 0; i < 4; i++) statuses.push((await get(wrong, '10.0.0.1')).statusCode);
      expect(statuses).toEqual([401, 401, 401, 429]);
      // Blocked for wrong keys until the window ends, but a right key from the same address
      // (another client behind the same NAT) still passes.
      const refused = await get(wrong, '10.0.0.1');
      expect(refused.statusCode).toBe(429);
      expect(refused.json()).toMatchObject({ code: 'rate_limited' });
      expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
      expect((await get(good, '10.0.0.1')).statusCode).toBe(200);
      // IPv6 counts by /64: other addresses of the same /64 share the count.
      const v6 = [];
      for (let i = 1; i <= 4; i++) v6.push((await get(wrong, `2001:db8:1:2::${i}`)).statusCode);
      expect(v6).toEqual([401, 401, 401, 429]);
      expect((await get(wrong, '2001:db8:1:3::1')).statusCode).toBe(401);
      // Other addresses are not affected.
      expect((await get(good, '10.0.0.2')).statusCode).toBe(200);
      expect((await get(wrong, '10.0.0.2')).statusCode).toBe(401);
    } finally {
      await inst.close();
    }
  });

  it('AUTH_FAILURES_PER_MINUTE=0 turns the failed-key limit off', async () => {
    const inst = await startInstance(db.url, { authFailuresPerMinute: 0 });
    try {
      expect(internals(inst.sessions).authFailureLimiter).toBeNull();
      for (let i = 0; i < 40; i++) expect((await call(inst.app, 'ask_wrongwrongwr_x', 'GET', '/v1/sessions')).statusCode).toBe(401);
    } finally {
      await inst.close();
    }
  });

  it('RATE_LIMIT_PER_MINUTE=0 turns it off', async () => {
    const inst = await startInstance(db.url, { rateLimitPerMinute: 0 });
    try {
      expect(internals(inst.sessions).rateLimiter).toBeNull();
      const k = await makeKey(inst.sessions, 'acme', ['read']);
      const res = await call(inst.app, k, 'GET', '/v1/sessions');
      expect(res.statusCode).toBe(200);
      expect(res.headers['ratelimit-limit']).toBeUndefined();
    } finally {
      await inst.close();
    }
  });

  it.skipIf(!hasRedis)('two instances sharing Redis respect the combined allowance within one window', async () => {
    const keyPrefix = uniqueKeyPrefix();
    // A loaded machine must not make a limit check time out and fall back to local counting.
    const shared = { redisUrl: serviceUrl('redis'), keyPrefix, rateLimitPerMinute: 10, limiterRedisTimeoutMs: 10_000 };
    const a = await startInstance(db.url, shared);
    const b = await startInstance(db.url, shared);
    try {
      const k = await makeKey(a.sessions, 'acme', ['read']);
      const results = [];
      for (let i = 0; i < 24; i++) {
        const res = await call(i % 2 === 0 ? a.app : b.app, k, 'GET', '/v1/sessions');
        results.push(res.statusCode);
      }
      expect(results.filter((s) => s === 200)).toHaveLength(10);
      expect(results.filter((s) => s === 429)).toHaveLength(14);
      expect(results.slice(0, 10).every((s) => s === 200)).toBe(true);
      // Concurrent requests from both instances at once: still no more than the allowance.
      const k2 = await makeKey(a.sessions, 'acme', ['read']);
      const burst = await Promise.all(
        Array.from({ length: 30 }, (_, i) => call(i % 2 === 0 ? a.app : b.app, k2, 'GET', '/v1/sessions')),
      );
      expect(burst.filter((r) => r.statusCode === 200)).toHaveLength(10);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it.skipIf(!hasRedis)('wrong keys are counted per address across instances sharing Redis', async () => {
    const shared = { redisUrl: serviceUrl('redis'), keyPrefix: uniqueKeyPrefix(), authFailuresPerMinute: 4, limiterRedisTimeoutMs: 10_000 };
    const a = await startInstance(db.url, shared);
    const b = await startInstance(db.url, shared);
    try {
      const wrong = 'ask_wrongwrongwr_' + 'x'.repeat(43);
      const statuses = [];
      for (let i = 0; i < 6; i++) {
        const res = await (i % 2 === 0 ? a : b).app.inject({
          method: 'GET',
          url: '/v1/sessions',
          remoteAddress: '10.1.2.3',
          headers: { authorization: `Bearer ${wrong}` },
        });
        statuses.push(res.statusCode);
      }
      expect(statuses).toEqual([401, 401, 401, 401, 429, 429]);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('fails open when Redis is unreachable: requests are served, limited per instance', async () => {
    const inst = await startInstance(db.url, { redisUrl: 'redis://127.0.0.1:1', rateLimitPerMinute: 3 });
    try {
      const k = await makeKey(inst.sessions, 'acme', ['read']);
      const started = Date.now();
      const statuses = [];
      for (let i = 0; i < 4; i++) statuses.push((await call(inst.app, k, 'GET', '/v1/sessions')).statusCode);
      expect(statuses).toEqual([200, 200, 200, 429]);
      expect(Date.now() - started).toBeLessThan(10_000);
      const ready = await inst.app.inject({ method: 'GET', url: '/ready' });
      expect(ready.statusCode).toBe(200);
      expect(ready.json().dependencies.find((d: { name: string }) => d.name === 'redis')).toMatchObject({ ok: false });
    } finally {
      await inst.close();
    }
  });
});

describe.skipIf(!hasPostgres)('SSE connection slots', { timeout: 60_000 }, () => {
  it.skipIf(!hasRedis)('shared by instances through Redis; released slots free capacity', async () => {
    const prefix = uniqueKeyPrefix();
    const r1 = createRedisConnection({ url: serviceUrl('redis') });
    const r2 = createRedisConnection({ url: serviceUrl('redis') });
    await Promise.all([r1.connect(), r2.connect()]);
    try {
      // A loaded machine must not make a slot check time out (default 250 ms) and fall back to
      // local counting, which would hand out slots Redis says are taken.
      const options = { timeoutMs: 10_000 };
      const l1 = new RedisConnectionLimiter(r1, new RedisKeys(prefix), 2, undefined, options);
      const l2 = new RedisConnectionLimiter(r2, new RedisKeys(prefix), 2, undefined, options);
      const s1 = await l1.acquire('key-1');
      const s2 = await l2.acquire('key-1');
      expect(s1).not.toBeNull();
      expect(s2).not.toBeNull();
      expect(await l1.acquire('key-1')).toBeNull();
      expect(await l2.acquire('key-1')).toBeNull();
      expect(await l2.acquire('key-2')).not.toBeNull();
      // release() sends its ZREM without waiting for it: l2 sees the slot free once it has run.
      // (Well before the slot's 30 s lease could lapse, so this proves the release.)
      s1?.release();
      await waitFor(async () => (await l2.acquire('key-1')) !== null, 10_000, 'the released slot');
    } finally {
      await Promise.all([r1.close(), r2.close()]);
    }
  });

  it('holdConnectionSlot: the next stream over the limit is a 429; closing a stream frees its slot', async () => {
    const db = await freshDatabase();
    const sessions = await createSessions({
      env: {},
      databaseUrl: db.url,
      limits: { ...DEFAULT_LIMITS, sseConnectionsPerKey: 1 },
    });
    const app = await buildApp({ sessions, logger: false });
    // A stand-in for the SSE routes: holds its slot until the client leaves.
    app.get('/v1/test/stream', { config: { scope: 'read' } }, async (request, reply) => {
      await holdConnectionSlot(request, reply, internals(sessions).connectionLimiter);
      reply.hijack();
      reply.raw.writeHead(200, { 'content-type': 'text/event-stream' });
      reply.raw.write(': open\n\n');
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = app.server.address() as AddressInfo;
    const key = await makeKey(sessions, 'acme', ['read']);
    const open = () =>
      new Promise<{ status: number; body: string; req: http.ClientRequest }>((resolve, reject) => {
        const req = http.get({ port, host: '127.0.0.1', path: '/v1/test/stream', headers: { authorization: `Bearer ${key}` } }, (res) => {
          let body = '';
          res.on('data', (d: Buffer) => {
            body += d.toString();
            if (res.statusCode === 200) resolve({ status: 200, body, req });
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body, req }));
        });
        req.on('error', reject);
      });
    try {
      const first = await open();
      expect(first.status).toBe(200);
      const second = await open();
      expect(second.status).toBe(429);
      expect(JSON.parse(second.body).code).toBe('too_many_connections');
      first.req.destroy();
      // The server frees the slot when it sees the connection close.
      await waitFor(() => internals(sessions).connectionLimiter.held() === 0, 10_000, 'the slot to be freed');
      const third = await open();
      expect(third.status).toBe(200);
      third.req.destroy();
    } finally {
      await app.close();
      await sessions.close();
      await db.drop();
    }
  });
});
