/**
 * The benchmark of SPEC §14: the session operations side by side with raw baselines on the
 * same connections, at equal concurrency, in one run. Run by `agent-sessions bench` and by
 * `npm run bench` (bench/run.ts). It creates a throwaway database on the PostgreSQL server
 * it is given (and drops it at the end) and keeps its Redis keys under a unique prefix
 * (deleted at the end).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import pg from 'pg';
import { pino } from 'pino';
import { buildApp } from '../server/app.js';
import { createSessions } from '../app/assemble.js';
import { internals } from '../app/internal.js';
import { sessionKey } from '../core/ids.js';
import { DEFAULT_TENANT } from '../core/types.js';
import type { Sessions } from '../app/sessions.js';

export interface BenchOptions {
  /** A PostgreSQL server where the bench may create and drop a database (its URL's database is only used to connect). */
  databaseUrl: string;
  redisUrl: string;
  /** Operations in flight at once (default 32). */
  concurrency?: number;
  /** Measured seconds per operation, split into interleaved rounds (default 2). */
  secondsPerOperation?: number;
  /** Sessions created before measuring (default 2,000). */
  sessions?: number;
  /** Runs interrupted one after another for the interrupt latency (default 50). */
  interrupts?: number;
  /**
   * PostgreSQL pool size of each instance the bench opens (DATABASE_POOL_MAX; default the
   * instances' own default): several instances are open at once, so a server whose
   * `max_connections` others share may need a smaller one.
   */
  databasePoolMax?: number;
  /** Progress lines. */
  log?: (line: string) => void;
}

export interface BenchResult {
  name: string;
  ops: number;
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  baseline?: string;
  /** ops/s divided by the baseline's ops/s. */
  ratio?: number;
  target?: string;
  met?: boolean;
}

export interface BenchReport {
  at: string;
  concurrency: number;
  secondsPerOperation: number;
  node: string;
  results: BenchResult[];
}

type Op = (i: number) => Promise<unknown>;

function quantile(sorted: Float64Array, q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))] ?? 0;
}

/**
 * Runs `op` from `concurrency` loops for `ms`, appending latencies; resolves to the elapsed ms
 * and the calls made. Every call is counted and one call in eight is timed (p50/p99 come
 * from those): reading the clock and recording a latency cost about as much as a near-cache
 * hit, so timing every call would measure the loop. The same loop runs every operation and
 * its baseline. A timed call's second clock reading is also the deadline check, so each loop
 * makes up to seven calls past the deadline; the elapsed time includes them.
 */
async function drive(op: Op, ms: number, concurrency: number, latencies: number[] | null): Promise<{ elapsed: number; ops: number }> {
  const started = performance.now();
  const deadline = started + ms;
  let counter = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      let now = performance.now();
      for (let n = 0; now < deadline; n++) {
        if ((n & 7) === 0) {
          const t = performance.now();
          await op(counter++);
          now = performance.now();
          latencies?.push(now - t);
        } else {
          await op(counter++);
        }
      }
    }),
  );
  return { elapsed: performance.now() - started, ops: counter };
}

function compare(result: BenchResult, baseline: BenchResult, target: string, met?: (ratio: number) => boolean): BenchResult {
  const ratio = result.opsPerSec / baseline.opsPerSec;
  return { ...result, baseline: baseline.name, ratio, target, ...(met ? { met: met(ratio) } : {}) };
}

/** Listens on a free loopback port; resolves to a GET function over a keep-alive agent. */
async function httpGetter(app: FastifyInstance, concurrency: number, headers: Record<string, string>): Promise<(path: string) => Promise<void>> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  app.addHook('onClose', async () => agent.destroy());
  await app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = app.server.address() as AddressInfo;
  return (urlPath) =>
    new Promise<void>((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port, path: urlPath, agent, headers }, (res) => {
        res.resume();
        res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`GET ${urlPath}: ${res.statusCode}`))));
      });
      req.on('error', reject);
    });
}

/**
 * Interrupt latency across instances: a run on `owner` waits for its signal; `other` asks for
 * the interrupt; the time from that call to the abort on the owner, once per run.
 */
async function interruptLatencies(owner: Sessions, other: Sessions, runs: number): Promise<{ latencies: number[]; elapsedMs: number }> {
  const session = await owner.create({ title: 'bench interrupts' });
  const latencies: number[] = [];
  const started = performance.now();
  for (let i = 0; i < runs; i++) {
    let aborted = 0;
    let running!: () => void;
    const isRunning = new Promise<void>((resolve) => (running = resolve));
    const run = await owner.runs.start(session.id, async (ctx) => {
      running();
      await new Promise<void>((resolve) => {
        if (ctx.signal.aborted) resolve();
        ctx.signal.addEventListener('abort', () => resolve(), { once: true });
      });
      aborted = performance.now();
    });
    await isRunning;
    const asked = performance.now();
    await other.runs.interrupt(session.id, { runId: run.id });
    await owner.runs.wait(session.id, run.id);
    latencies.push(aborted - asked);
  }
  return { latencies, elapsedMs: performance.now() - started };
}

export async function runBench(options: BenchOptions): Promise<BenchReport> {
  const concurrency = options.concurrency ?? 32;
  const seconds = options.secondsPerOperation ?? 2;
  const sessionCount = options.sessions ?? 2_000;
  const interrupts = options.interrupts ?? 50;
  const log = options.log ?? (() => undefined);
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError('concurrency must be a positive integer');
  if (!(seconds > 0)) throw new RangeError('secondsPerOperation must be positive');
  if (!Number.isInteger(sessionCount) || sessionCount < 1) throw new RangeError('sessions must be a positive integer');
  if (!Number.isInteger(interrupts) || interrupts < 1) throw new RangeError('interrupts must be a positive integer');

  /**
   * Measures a group (a baseline and the operations compared with it) in interleaved rounds,
   * so that load from other processes on a shared machine falls on all of them alike.
   */
  async function measureGroup(group: Array<[name: string, op: Op]>, rounds = 4): Promise<BenchResult[]> {
    const state = group.map(([name, op]) => ({ name, op, latencies: [] as number[], elapsed: 0, ops: 0 }));
    for (const s of state) await drive(s.op, Math.min(200, seconds * 1000), concurrency, null);
    for (let r = 0; r < rounds; r++) {
      for (const s of state) {
        const { elapsed, ops } = await drive(s.op, (seconds * 1000) / rounds, concurrency, s.latencies);
        s.elapsed += elapsed;
        s.ops += ops;
      }
    }
    return state.map((s) => {
      const sorted = Float64Array.from(s.latencies).sort();
      const result: BenchResult = {
        name: s.name,
        ops: s.ops,
        opsPerSec: s.ops / (s.elapsed / 1000),
        p50Ms: quantile(sorted, 0.5),
        p99Ms: quantile(sorted, 0.99),
      };
      log(`  ${result.name}: ${Math.round(result.opsPerSec)} ops/s`);
      return result;
    });
  }

  const token = `${Date.now().toString(36)}${randomUUID().slice(0, 8)}`;
  const dbName = `as_bench_${token}`;
  const admin = new pg.Client({ connectionString: options.databaseUrl });
  admin.on('error', () => undefined);
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(dbName)}`);
  } catch (err) {
    await admin.end().catch(() => undefined);
    throw err;
  }
  const url = new URL(options.databaseUrl);
  url.pathname = `/${dbName}`;
  const prefix = `as_bench:${token}:`;
  const pool = options.databasePoolMax === undefined ? {} : { DATABASE_POOL_MAX: String(options.databasePoolMax) };
  const env = { DATABASE_URL: url.toString(), REDIS_URL: options.redisUrl, KEY_PREFIX: prefix, LOG_LEVEL: 'silent', ...pool };

  const opened: Array<{ close(): Promise<void> }> = [];
  const summarize = (name: string, latencies: number[], elapsedMs: number): BenchResult => {
    const sorted = Float64Array.from(latencies).sort();
    return { name, ops: latencies.length, opsPerSec: latencies.length / (elapsedMs / 1000), p50Ms: quantile(sorted, 0.5), p99Ms: quantile(sorted, 0.99) };
  };
  const results: BenchResult[] = [];
  let redisForCleanup: NonNullable<ReturnType<typeof internals>['redis']>['commands'] | null = null;
  try {
    // near: the full stack (near cache → Redis → PostgreSQL); redisOnly: no near cache, so
    // every get is a Redis read; pgOnly: no Redis and no cache, so every get is PostgreSQL.
    const near = await createSessions({ env });
    opened.push(near);
    const redisOnly = await createSessions({ env: { ...env, CACHE_MAX_ENTRIES: '0' } });
    opened.push(redisOnly);
    const pgOnly = await createSessions({ env: { DATABASE_URL: env.DATABASE_URL, CACHE_MAX_ENTRIES: '0', LOG_LEVEL: 'silent', ...pool } });
    opened.push(pgOnly);
    // pgNear: no Redis, near cache on (kept coherent over LISTEN/NOTIFY): writes pay for the
    // invalidation and wait for its echo.
    const pgNear = await createSessions({ env: { DATABASE_URL: env.DATABASE_URL, LOG_LEVEL: 'silent', ...pool } });
    opened.push(pgNear);
    const redis = internals(redisOnly).redis?.commands;
    if (!redis) throw new Error('no Redis connection');
    redisForCleanup = redis;
    await internals(redisOnly).db.exec(`CREATE TABLE bench_raw (id uuid PRIMARY KEY, title text, n bigint NOT NULL DEFAULT 0,
      metadata jsonb NOT NULL DEFAULT '{}', created_at timestamptz NOT NULL DEFAULT now())`);

    const ids: string[] = [];
    for (let i = 0; i < sessionCount; i += 100) {
      const n = Math.min(100, sessionCount - i);
      const batch = await Promise.all(Array.from({ length: n }, () => near.create({ userId: 'bench', title: 'bench' })));
      ids.push(...batch.map((s) => s.id));
    }
    await internals(redisOnly).db.query(
      `INSERT INTO bench_raw (id, title) SELECT (x)::uuid, 'bench' FROM jsonb_array_elements_text($1::jsonb) x`,
      [JSON.stringify(ids)],
    );
    const pick = (i: number) => ids[(i * 7919) % ids.length] as string;
    const hot = ids.slice(0, 64);
    const pickHot = (i: number) => hot[i % hot.length] as string;
    // The raw GET reads a copy of a session's stored value: the same bytes a Redis hit reads.
    const keys = internals(redisOnly).redis?.keys;
    const stored = keys ? await redis.get(keys.session(sessionKey(DEFAULT_TENANT, ids[0] as string))) : null;
    // A marker ("<version>:") holds no session: it would make the baseline read less.
    if (!stored || stored.endsWith(':')) throw new Error('no stored snapshot to copy');
    const rawKey = `${prefix}raw`;
    await redis.set(rawKey, stored);
    for (const id of hot) await near.get(id);

    log(`agent-sessions bench: concurrency ${concurrency}, ${seconds} s per operation, interleaved rounds`);
    const [redisGet, nearGet, redisHit] = await measureGroup([
      ['raw Redis GET', () => redis.get(rawKey)],
      ['get (near-cache hit)', (i) => near.get(pickHot(i))],
      ['get (Redis hit)', (i) => redisOnly.get(pick(i))],
    ]);
    const [pkSelect, pgGet] = await measureGroup([
      ['raw PK SELECT', (i) => internals(pgOnly).db.query('SELECT * FROM sessions WHERE tenant_id = $1 AND id = $2', ['default', pick(i)])],
      ['get (PostgreSQL, no cache)', (i) => pgOnly.get(pick(i))],
    ]);
    const [rawInsert, create, createPg, createPgNear] = await measureGroup([
      ['raw single-row INSERT', () => internals(redisOnly).db.query(`INSERT INTO bench_raw (id, title, metadata) VALUES ($1, $2, $3::jsonb)`, [randomUUID(), 'x', '{}'])],
      ['create (session + outbox, cached)', () => redisOnly.create({ userId: 'bench', title: 'x' })],
      ['create (PostgreSQL only, no cache)', () => pgOnly.create({ userId: 'bench', title: 'x' })],
      ['create (PostgreSQL only, near cache)', () => pgNear.create({ userId: 'bench', title: 'x' })],
    ]);
    const [rawUpdate, update, increment, incrementPg, incrementPgNear] = await measureGroup([
      ['raw UPDATE … RETURNING', (i) => internals(redisOnly).db.query('UPDATE bench_raw SET n = n + 1 WHERE id = $1 RETURNING *', [pick(i)])],
      ['update (title)', (i) => redisOnly.update(pick(i), { title: `t${i}` })],
      ['counter increment', (i) => redisOnly.incrementCounters(pick(i), { totalTurns: 1 })],
      ['counter increment (PostgreSQL only)', (i) => pgOnly.incrementCounters(pick(i), { totalTurns: 1 })],
      ['counter increment (PostgreSQL only, near cache)', (i) => pgNear.incrementCounters(pick(i), { totalTurns: 1 })],
    ]);
    const [rawLock, lock] = await measureGroup([
      [
        'raw SET NX PX + DEL',
        async (i) => {
          const key = `${prefix}lock:${pick(i)}`;
          if ((await redis.set(key, 't', { condition: 'NX', expiration: { type: 'PX', value: 10_000 } })) === 'OK') await redis.del(key);
        },
      ],
      ['lock acquire/release', (i) => redisOnly.withSessionLock(pick(i), async () => undefined, { timeoutMs: 10_000 })],
    ]);

    // HTTP: GET /v1/sessions/:id (API key checked, near cache) against a Fastify hello-world
    // route, both served by this process to the same keep-alive client. Rate limiting is off,
    // so the comparison is the route itself.
    const adminKey = `bench-${token}-0123456789abcdef`;
    const served = await createSessions({ env: { ...env, ADMIN_API_KEY: adminKey, RATE_LIMIT_PER_MINUTE: '0' } });
    opened.push(served);
    const api = await buildApp({ sessions: served, logger: false });
    opened.push(api);
    // The same route writing its request log line (info, as serve does: synchronously) to /dev/null.
    const logged = await buildApp({
      sessions: served,
      logger: pino({ level: 'info' }, pino.destination({ dest: '/dev/null', sync: true })),
    });
    opened.push(logged);
    const hello = Fastify({ logger: false });
    hello.get('/hello', async () => ({ hello: 'world' }));
    opened.push(hello);
    const getApi = await httpGetter(api, concurrency, { authorization: `Bearer ${adminKey}` });
    const getLogged = await httpGetter(logged, concurrency, { authorization: `Bearer ${adminKey}` });
    const getHello = await httpGetter(hello, concurrency, {});
    for (const id of hot) await getApi(`/v1/sessions/${id}`);
    const [helloRoute, httpGet, httpGetLogged] = await measureGroup([
      ['Fastify hello route', () => getHello('/hello')],
      ['HTTP GET session', (i) => getApi(`/v1/sessions/${pickHot(i)}`)],
      ['HTTP GET session, request logs on', (i) => getLogged(`/v1/sessions/${pickHot(i)}`)],
    ]);

    // Interrupt: asked on one instance, the run aborted on another (Redis pub/sub).
    const interrupted = await interruptLatencies(near, redisOnly, interrupts);
    const interrupt = summarize('interrupt, instance A → abort on B', interrupted.latencies, interrupted.elapsedMs);
    log(`  ${interrupt.name}: p50 ${interrupt.p50Ms.toFixed(1)} ms, p99 ${interrupt.p99Ms.toFixed(1)} ms over ${interrupts} runs`);

    if (!redisGet || !nearGet || !redisHit || !pkSelect || !pgGet || !rawInsert || !create || !createPg || !createPgNear) throw new Error('missing result');
    if (!helloRoute || !httpGet || !httpGetLogged) throw new Error('missing result');
    if (!rawUpdate || !update || !increment || !incrementPg || !incrementPgNear || !rawLock || !lock) throw new Error('missing result');

    results.push(
      redisGet,
      compare(nearGet, redisGet, '≥ 10× raw GET', (r) => r >= 10),
      compare(redisHit, redisGet, '≥ 1/1.5 of raw GET', (r) => r >= 1 / 1.5),
      pkSelect,
      compare(pgGet, pkSelect, '≥ 1/1.5 of PK SELECT', (r) => r >= 1 / 1.5),
      rawInsert,
      compare(create, rawInsert, '≥ 0.8× raw INSERT', (r) => r >= 0.8),
      compare(createPg, rawInsert, '(the same without any cache)'),
      compare(createPgNear, rawInsert, '(the same, near cache over LISTEN/NOTIFY)'),
      rawUpdate,
      compare(update, rawUpdate, '(no target)'),
      compare(increment, rawUpdate, '≥ 1/1.5 of UPDATE', (r) => r >= 1 / 1.5),
      compare(incrementPg, rawUpdate, '(the same without any cache)'),
      compare(incrementPgNear, rawUpdate, '(the same, near cache over LISTEN/NOTIFY)'),
      rawLock,
      compare(lock, rawLock, '(no target)'),
      helloRoute,
      compare(httpGet, helloRoute, '≥ 0.5× hello route', (r) => r >= 0.5),
      compare(httpGetLogged, helloRoute, '(the same, one log line per request)'),
      { ...interrupt, target: 'p99 ≤ 50 ms', met: interrupt.p99Ms <= 50 },
    );
  } finally {
    // The bench's keys live under its own prefix on a Redis that may be shared.
    if (redisForCleanup) {
      for await (const keys of redisForCleanup.scanIterator({ MATCH: `${prefix}*`, COUNT: 1_000 })) {
        if (keys.length > 0) await redisForCleanup.del(keys);
      }
    }
    for (const s of opened.reverse()) await s.close().catch(() => undefined);
    await admin.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(dbName)} WITH (FORCE)`).catch(() => undefined);
    await admin.end().catch(() => undefined);
  }
  return { at: new Date().toISOString(), concurrency, secondsPerOperation: seconds, node: process.version, results };
}

/** The results as an aligned text table. */
export function formatBenchTable(results: readonly BenchResult[]): string {
  const table = [
    ['operation', 'ops/s', 'p50 ms', 'p99 ms', 'vs baseline', 'ratio', 'target'],
    ...results.map((r) => [
      r.name,
      String(Math.round(r.opsPerSec)),
      r.p50Ms.toFixed(3),
      r.p99Ms.toFixed(3),
      r.baseline ?? (r.target === undefined ? '(baseline)' : '—'),
      r.ratio === undefined ? '' : `${r.ratio.toFixed(2)}×`,
      r.target === undefined ? '' : r.met === undefined ? r.target : `${r.target}: ${r.met ? 'met' : 'MISSED'}`,
    ]),
  ];
  const widths = (table[0] as string[]).map((_, c) => Math.max(...table.map((row) => (row[c] as string).length)));
  const left = new Set([0, 4, 6]);
  return table
    .map((row) => row.map((cell, c) => (left.has(c) ? cell.padEnd(widths[c] as number) : cell.padStart(widths[c] as number))).join('  ').trimEnd())
    .join('\n');
}

/** Writes the report as JSON, creating the directory; resolves to the path written. */
export function writeBenchReport(report: BenchReport, file?: string): string {
  const target = path.resolve(file ?? path.join('bench', 'results', `bench-${report.at.replace(/[:.]/g, '-')}.json`));
  mkdirSync(path.dirname(target), { recursive: true });
  writeFileSync(target, `${JSON.stringify(report, null, 2)}\n`);
  return target;
}
