/**
 * Erasure of a user and of a tenant (SPEC §18): afterwards no column of any table, and no
 * Redis key under the prefix, holds an erased id, user id or tenant name; everything else is
 * byte-identical; caches of other instances answer 404 at once; the tenant's keys are 401 on
 * another instance. Bad input and the wrong key change nothing.
 */
import { createClient } from 'redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSessions, internals, type Sessions } from '../../src/internal.js';
import { buildApp } from '../../src/server/app.js';
import type { Runner } from '../../src/core/runs.js';
import { Erasure } from '../../src/core/erasure.js';
import { AgentSessionsClient } from '../../src/client/index.js';
import { PostgresSessionRepository } from '../../src/adapters/postgres/session-repository.js';
import { RedisKeys } from '../../src/adapters/redis/connection.js';
import { sessionKey } from '../../src/core/ids.js';
import {
  call,
  freshDatabase,
  listen,
  makeKey,
  requireServices,
  serviceUrl,
  snapshot,
  uniqueKeyPrefix,
  uniqueToken,
  type Instance,
  type TestDatabase,
} from './support.js';

/** Every row of every table as text, per table (the raw material of the searches below). */
async function dump(sessions: Sessions): Promise<Record<string, string[]>> {
  const db = internals(sessions).db;
  const tables = await db.query<{ name: string }>(
    `SELECT table_name AS name FROM information_schema.tables
     WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name`,
  );
  const out: Record<string, string[]> = {};
  for (const { name } of tables) {
    const rows = await db.query<{ t: string }>(`SELECT t::text AS t FROM ${name} t ORDER BY 1`);
    out[name] = rows.map((r) => r.t);
  }
  return out;
}

/**
 * Searches every text, jsonb, json, uuid and array column of every table (from
 * information_schema) for each term; returns "table.column: term" for every hit.
 */
async function search(sessions: Sessions, terms: readonly string[]): Promise<string[]> {
  const db = internals(sessions).db;
  const columns = await db.query<{ table_name: string; column_name: string; data_type: string }>(
    `SELECT c.table_name, c.column_name, c.data_type FROM information_schema.columns c
     JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
     WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'
       AND c.data_type IN ('text', 'character varying', 'jsonb', 'json', 'uuid', 'ARRAY')`,
  );
  expect(columns.length).toBeGreaterThan(10);
  const hits: string[] = [];
  for (const { table_name, column_name } of columns) {
    for (const term of terms) {
      const rows = await db.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM ${table_name} WHERE position($1 in ${column_name}::text) > 0`,
        [term],
      );
      if ((rows[0]?.n ?? 0) > 0) hits.push(`${table_name}.${column_name}: ${term}`);
    }
  }
  return hits;
}

/** Rows (as text) that name none of the terms. */
function without(rows: Record<string, string[]>, terms: readonly string[]): Record<string, string[]> {
  return Object.fromEntries(Object.entries(rows).map(([t, r]) => [t, r.filter((row) => !terms.some((term) => row.includes(term)))]));
}

interface UserData {
  tenant: string;
  userId: string;
  marker: string;
  sessionIds: string[];
  runIds: string[];
}

/** A runner that writes personal data into output and echoes one input. */
const chatty: Runner = async (r) => {
  await r.emit({ type: 'text', data: { text: `hello ${String((r.input as { marker?: string } | null)?.marker)}` } });
  for await (const input of r.inputs) {
    await r.emit({ type: 'echo', data: input });
    return;
  }
};

/** Two sessions (one with a fork) with items, a finished run with output and input. */
async function populateUser(sessions: Sessions, tenant: string, userId: string): Promise<UserData> {
  const marker = `secret-${userId}-${uniqueToken()}`;
  const data: UserData = { tenant, userId, marker, sessionIds: [], runIds: [] };
  for (let i = 0; i < 2; i++) {
    const s = await sessions.create({ userId, title: `${marker} title`, metadata: { note: marker } }, { tenant });
    data.sessionIds.push(s.id);
    await sessions.items.append(s.id, [{ role: 'user', content: { text: `${marker} says hi` } }], { tenant });
    const run = await sessions.runs.start(s.id, chatty, { tenant, input: { marker } });
    data.runIds.push(run.id);
    await sessions.runs.sendInput(s.id, { marker }, { tenant });
    expect((await sessions.runs.wait(s.id, run.id, { tenant })).status).toBe('completed');
  }
  const fork = await sessions.fork(data.sessionIds[0] as string, {}, { tenant });
  data.sessionIds.push(fork.id);
  // A lease per session: with Redis it leaves the session's lease counter (`:fence`), which
  // erasure must take too.
  for (const id of data.sessionIds) await sessions.withSessionLock(id, async () => undefined, { tenant });
  return data;
}

function termsOf(u: UserData): string[] {
  return [u.userId, u.marker, ...u.sessionIds, ...u.runIds];
}

describe.skipIf(!requireServices(['postgres', 'redis'], 'security/erasure'))('erasure (PostgreSQL + Redis, two instances)', { timeout: 120_000 }, () => {
  let db: TestDatabase;
  let keyPrefix: string;
  let a: Instance;
  let b: Instance;
  let redis: ReturnType<typeof createClient>;
  let root: string;
  let acmeAdmin: string;
  let acmeWriter: string;
  let globexAdmin: string;
  let alice: UserData;
  let bob: UserData;
  let carol: UserData;
  let dave: UserData;

  async function start(): Promise<Instance> {
    const sessions = await createSessions({ env: {}, databaseUrl: db.url, redisUrl: serviceUrl('redis'), keyPrefix, runLeaseMs: 2_000 });
    const app = await buildApp({ sessions, logger: false });
    await app.ready();
    return { sessions, app, close: async () => (await app.close(), await sessions.close()) };
  }

  /** Every key under the prefix with its value (strings) or entries (streams). */
  async function redisDump(): Promise<Array<{ key: string; type: string; value: string; pttl: number }>> {
    const out = [];
    for await (const batch of redis.scanIterator({ MATCH: `${keyPrefix}*`, COUNT: 1000 })) {
      for (const key of [batch].flat()) {
        const type = await redis.type(key);
        const value =
          type === 'string' ? String(await redis.get(key)) : type === 'stream' ? JSON.stringify(await redis.xRange(key, '-', '+')) : type;
        out.push({ key, type, value, pttl: await redis.pTTL(key) });
      }
    }
    return out;
  }

  /**
   * The keys of a user's sessions, found by their hashed names (a key names no id): after
   * erasure only data-free tombstones that expire may be left.
   */
  async function sessionKeysOf(u: UserData): Promise<Array<{ key: string; type: string; value: string; pttl: number }>> {
    const keys = new RedisKeys(keyPrefix);
    const prefixes = u.sessionIds.map((id) => keys.session(sessionKey(u.tenant, id)));
    return (await redisDump()).filter((k) => prefixes.some((p) => k.key === p || k.key.startsWith(`${p}:`)));
  }

  function expectOnlyTombstones(left: Array<{ key: string; type: string; value: string; pttl: number }>): void {
    for (const k of left) {
      expect(k, JSON.stringify(k)).toMatchObject({ type: 'string', value: expect.stringMatching(/^-?\d+:$/) });
      expect(k.pttl, JSON.stringify(k)).toBeGreaterThan(0);
    }
  }

  beforeAll(async () => {
    db = await freshDatabase();
    keyPrefix = uniqueKeyPrefix();
    a = await start();
    b = await start();
    redis = createClient({ url: serviceUrl('redis') });
    await redis.connect();
    root = await makeKey(a.sessions, 'default', ['admin'], true);
    acmeAdmin = await makeKey(a.sessions, 'acme', ['admin']);
    acmeWriter = await makeKey(a.sessions, 'acme', ['read', 'write']);
    globexAdmin = await makeKey(a.sessions, 'globex', ['admin']);
    alice = await populateUser(a.sessions, 'acme', `alice-${uniqueToken()}`);
    bob = await populateUser(b.sessions, 'acme', `bob-${uniqueToken()}`);
    carol = await populateUser(a.sessions, 'globex', `carol-${uniqueToken()}`);
    dave = await populateUser(b.sessions, 'globex', `dave-${uniqueToken()}`);
  });

  afterAll(async () => {
    await redis?.quit();
    await a?.close();
    await b?.close();
    await db?.drop();
  });

  it('refuses bad input and the wrong keys with a 4xx problem, changing nothing', async () => {
    const before = await snapshot(a.sessions);
    const cases: Array<[string | null, string, string, number, string]> = [
      [null, 'DELETE', `/v1/admin/users/${alice.userId}?tenant=acme`, 401, 'unauthorized'],
      [acmeWriter, 'DELETE', `/v1/admin/users/${alice.userId}?tenant=acme`, 403, 'forbidden'],
      [globexAdmin, 'DELETE', `/v1/admin/users/${alice.userId}?tenant=acme`, 403, 'forbidden'],
      [acmeAdmin, 'DELETE', `/v1/admin/users/${alice.userId}?tenant=bad%20tenant`, 400, 'validation_failed'],
      [acmeAdmin, 'DELETE', `/v1/admin/users/${'x'.repeat(201)}`, 414, 'bad_request'],
      [acmeAdmin, 'DELETE', '/v1/admin/tenants/acme', 403, 'forbidden'],
      [acmeWriter, 'DELETE', '/v1/admin/tenants/acme', 403, 'forbidden'],
      [root, 'DELETE', '/v1/admin/tenants/no-such-tenant', 404, 'tenant_not_found'],
      [root, 'DELETE', '/v1/admin/tenants/bad%20tenant', 400, 'validation_failed'],
    ];
    for (const [key, method, url, status, code] of cases) {
      const res = await call(a.app, key, method as 'DELETE', url);
      expect({ url, status: res.statusCode }).toEqual({ url, status });
      expect(res.headers['content-type']).toMatch(/problem\+json/);
      expect(res.json().code).toBe(code);
    }
    // An empty user id is not a route parameter at all.
    expect((await call(a.app, acmeAdmin, 'DELETE', '/v1/admin/users/')).statusCode).toBeGreaterThanOrEqual(400);
    expect((await call(a.app, acmeAdmin, 'DELETE', '/v1/admin/users/')).statusCode).toBeLessThan(500);
    await expect(a.sessions.admin.eraseUser('', { tenant: 'acme' })).rejects.toMatchObject({ code: 'validation_failed' });
    expect(await snapshot(a.sessions)).toEqual(before);
  });

  it('refuses a user with a run in progress (409), erasing nothing', async () => {
    const userId = `busy-${uniqueToken()}`;
    const s = await a.sessions.create({ userId }, { tenant: 'acme' });
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const run = await a.sessions.runs.start(s.id, async () => held, { tenant: 'acme' });
    const before = await internals(a.sessions).db.query('SELECT count(*)::int AS n FROM sessions');
    const res = await call(a.app, acmeAdmin, 'DELETE', `/v1/admin/users/${userId}`);
    expect(res.statusCode).toBe(409);
    expect(res.json()).toMatchObject({ code: 'session_busy' });
    expect(await internals(a.sessions).db.query('SELECT count(*)::int AS n FROM sessions')).toEqual(before);
    release();
    await a.sessions.runs.wait(s.id, run.id, { tenant: 'acme' });
    const erased = await call(a.app, acmeAdmin, 'DELETE', `/v1/admin/users/${userId}`);
    expect(erased.statusCode).toBe(200);
    expect(erased.json()).toMatchObject({ sessions: 1, runs: 1 });
  });

  it('erases one user: no trace in any column or Redis key, everything else byte-identical, other caches 404 at once', async () => {
    // Instance B caches one of alice's sessions (near cache and Redis).
    const cached = alice.sessionIds[0] as string;
    expect((await call(b.app, acmeAdmin, 'GET', `/v1/sessions/${cached}`)).statusCode).toBe(200);
    expect((await call(b.app, acmeAdmin, 'GET', `/v1/sessions/${cached}`)).statusCode).toBe(200);
    const terms = termsOf(alice);
    expect((await search(a.sessions, terms)).length).toBeGreaterThan(0);
    expect((await redisDump()).some((k) => terms.some((t) => k.key.includes(t) || k.value.includes(t)))).toBe(true);
    // Her sessions were locked: each has its lease counter, a hash without TTL.
    const fences = new Set(alice.sessionIds.map((id) => new RedisKeys(keyPrefix).sessionPart(sessionKey('acme', id), 'fence')));
    expect((await sessionKeysOf(alice)).filter((k) => fences.has(k.key))).toHaveLength(alice.sessionIds.length);
    const before = await dump(a.sessions);

    const res = await call(a.app, acmeAdmin, 'DELETE', `/v1/admin/users/${encodeURIComponent(alice.userId)}`);
    expect(res.statusCode).toBe(200);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.json()).toEqual({ sessions: 3, items: 3, runs: 2, output_events: expect.any(Number), outbox: expect.any(Number), keys: 0 });
    expect(res.json().output_events).toBeGreaterThanOrEqual(8);
    expect(res.json().outbox).toBeGreaterThan(0);

    expect((await call(b.app, acmeAdmin, 'GET', `/v1/sessions/${cached}`)).statusCode).toBe(404);
    expect(await search(a.sessions, terms)).toEqual([]);
    // Every other row is untouched, byte for byte.
    expect(await dump(a.sessions)).toEqual(without(before, terms));
    // Redis: no value names alice; the only keys naming her sessions are data-free tombstones
    // that expire (they keep a late write of an older snapshot out of the cache).
    for (const k of await redisDump()) {
      expect(terms.filter((t) => k.value.includes(t))).toEqual([]);
      if (terms.some((t) => k.key.includes(t))) {
        expect(k).toMatchObject({ type: 'string', value: expect.stringMatching(/^-?\d+:$/) });
        expect(k.pttl).toBeGreaterThan(0);
        // 60 s, slid up to the cache TTL by reads (GETEX) of the erased id.
        expect(k.pttl, JSON.stringify(k)).toBeLessThanOrEqual(3_600_000);
      }
    }
    // Keys are named by a hash of the session: found that way, hers are tombstones only (no
    // lease counter left).
    expectOnlyTombstones(await sessionKeysOf(alice));
    // Her sessions are gone for the tenant's keys on either instance; bob's are not.
    for (const id of alice.sessionIds) expect((await call(a.app, acmeWriter, 'GET', `/v1/sessions/${id}`)).statusCode).toBe(404);
    for (const id of bob.sessionIds) expect((await call(b.app, acmeWriter, 'GET', `/v1/sessions/${id}`)).statusCode).toBe(200);
    // Erasing again finds nothing and is not an error.
    const again = await call(a.app, acmeAdmin, 'DELETE', `/v1/admin/users/${encodeURIComponent(alice.userId)}?tenant=acme`);
    expect(again.json()).toEqual({ sessions: 0, items: 0, runs: 0, output_events: 0, outbox: 0, keys: 0 });
  });

  it('a root admin erases a user of any tenant; the library API does the same', async () => {
    const res = await call(a.app, root, 'DELETE', `/v1/admin/users/${dave.userId}?tenant=globex`);
    expect(res.statusCode).toBe(200);
    expect(res.json().sessions).toBe(3);
    expect(await search(a.sessions, termsOf(dave))).toEqual([]);
    const userId = `lib-${uniqueToken()}`;
    await a.sessions.create({ userId }, { tenant: 'globex' });
    expect(await b.sessions.admin.eraseUser(userId, { tenant: 'globex' })).toMatchObject({ sessions: 1, keys: 0 });
  });

  it('the HTTP client erases over the same wire contract, and answers problems as errors', async () => {
    const served = await listen(a.sessions);
    try {
      const userId = `client-${uniqueToken()}`;
      await a.sessions.create({ userId }, { tenant: 'acme' });
      const client = new AgentSessionsClient({ baseUrl: served.base, apiKey: acmeAdmin });
      expect(await client.admin.eraseUser(userId)).toEqual({ sessions: 1, items: 0, runs: 0, output_events: 0, outbox: 1, keys: 0 });
      await expect(client.admin.eraseTenant('acme')).rejects.toMatchObject({ status: 403, code: 'forbidden' });
      await expect(new AgentSessionsClient({ baseUrl: served.base, apiKey: root }).admin.eraseTenant('nobody-here')).rejects.toMatchObject({
        status: 404,
        code: 'tenant_not_found',
      });
    } finally {
      await served.app.close();
    }
  });

  it('erases a tenant: no row names it, its keys are 401 on another instance, other tenants untouched', async () => {
    const cached = carol.sessionIds[1] as string;
    expect((await call(b.app, globexAdmin, 'GET', `/v1/sessions/${cached}`)).statusCode).toBe(200);
    expect((await sessionKeysOf(carol)).filter((k) => k.key.endsWith(':fence'))).toHaveLength(carol.sessionIds.length);
    const before = await dump(a.sessions);
    const res = await call(a.app, root, 'DELETE', '/v1/admin/tenants/globex');
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ sessions: 3, items: 3, runs: 2, keys: 1 });
    expect((await call(b.app, globexAdmin, 'GET', `/v1/sessions/${cached}`)).statusCode).toBe(401);
    expect(await b.sessions.find(cached, { tenant: 'globex' })).toBeNull();
    const terms = ['globex', ...termsOf(carol)];
    expect(await search(a.sessions, terms)).toEqual([]);
    expect(await dump(a.sessions)).toEqual(without(before, terms));
    for (const k of await redisDump()) {
      expect(k.key.includes('globex') || k.value.includes('globex')).toBe(false);
      for (const t of termsOf(carol)) expect(k.value.includes(t)).toBe(false);
    }
    expectOnlyTombstones(await sessionKeysOf(carol));
    // acme goes on working.
    for (const id of bob.sessionIds) expect((await call(b.app, acmeWriter, 'GET', `/v1/sessions/${id}`)).statusCode).toBe(200);
    expect((await call(a.app, root, 'DELETE', '/v1/admin/tenants/globex')).statusCode).toBe(404);
  });
});

describe('erasure (embedded)', { timeout: 60_000 }, () => {
  let sessions: Sessions;
  let app: Awaited<ReturnType<typeof buildApp>>;
  let root: string;

  beforeAll(async () => {
    sessions = await createSessions({ env: {}, dataDir: ':memory:', runLeaseMs: 2_000 });
    app = await buildApp({ sessions, logger: false });
    await app.ready();
    root = await makeKey(sessions, 'default', ['admin'], true);
  });

  afterAll(async () => {
    await app?.close();
    await sessions?.close();
  });

  it('erases a user and then a tenant, leaving no trace and the rest byte-identical', async () => {
    const erin = await populateUser(sessions, 'initech', `erin-${uniqueToken()}`);
    const frank = await populateUser(sessions, 'initech', `frank-${uniqueToken()}`);
    const other = await populateUser(sessions, 'umbrella', `gail-${uniqueToken()}`);
    const initechKey = await makeKey(sessions, 'initech', ['read']);
    const cached = erin.sessionIds[0] as string;
    await sessions.get(cached, { tenant: 'initech' });

    const before = await dump(sessions);
    const res = await call(app, root, 'DELETE', `/v1/admin/users/${erin.userId}?tenant=initech`);
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ sessions: 3, items: 3, runs: 2, keys: 0 });
    expect(await sessions.find(cached, { tenant: 'initech' })).toBeNull();
    expect(await search(sessions, termsOf(erin))).toEqual([]);
    expect(await dump(sessions)).toEqual(without(before, termsOf(erin)));

    const beforeTenant = await dump(sessions);
    expect(await sessions.admin.eraseTenant('initech')).toMatchObject({ sessions: 3, keys: 1 });
    expect((await call(app, initechKey, 'GET', '/v1/sessions')).statusCode).toBe(401);
    const terms = ['initech', ...termsOf(frank)];
    expect(await search(sessions, terms)).toEqual([]);
    expect(await dump(sessions)).toEqual(without(beforeTenant, terms));
    expect(await search(sessions, termsOf(other))).not.toEqual([]);
  });

  it('erases in batches (one transaction each) until nothing is left', async () => {
    const userId = `many-${uniqueToken()}`;
    for (let i = 0; i < 23; i++) {
      const s = await sessions.create({ userId }, { tenant: 'batchy' });
      await sessions.items.append(s.id, [{ role: 'user', content: { n: i } }], { tenant: 'batchy' });
    }
    const keep = await sessions.create({ userId: 'someone-else' }, { tenant: 'batchy' });
    const evicted: string[] = [];
    const discarded: string[] = [];
    const erasure = new Erasure({
      repository: new PostgresSessionRepository(internals(sessions).db),
      apiKeys: { deleteTenant: async () => 0 },
      evict: async (tenant, id) => void evicted.push(`${tenant}/${id}`),
      output: { discard: async (ids) => void discarded.push(...ids) },
      batchSize: 5,
    });
    expect(await erasure.eraseUser('batchy', userId)).toEqual({ sessions: 23, items: 23, runs: 0, outputEvents: 0, outbox: 46, keys: 0 });
    expect(new Set(evicted).size).toBe(23);
    expect(discarded.sort()).toEqual([...evicted].sort());
    expect(await search(sessions, [userId])).toEqual([]);
    expect(await sessions.find(keep.id, { tenant: 'batchy' })).not.toBeNull();
  });
});
