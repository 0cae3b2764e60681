/**
 * `npm run bench`: the session operations side by side with raw baselines on the same
 * connections, at equal concurrency, in one run (SPEC §14). Prints a table and writes the
 * same as JSON to bench/results/.
 *
 *   DATABASE_URL  PostgreSQL server to create a throwaway database on (default local)
 *   REDIS_URL     Redis (default redis://127.0.0.1:6379); keys go under a unique prefix
 *   BENCH_CONCURRENCY (default 32), BENCH_SECONDS per operation (default 2)
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import pg from 'pg';
import { createSessions } from '../src/sessions.js';

const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 32);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 2);
const ADMIN_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const SESSIONS = 2_000;

interface Result {
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

function quantile(sorted: Float64Array, q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))] ?? 0;
}

type Op = (i: number) => Promise<unknown>;

/** Runs `op` from CONCURRENCY loops for `ms`, appending latencies; resolves to the elapsed ms. */
async function drive(op: Op, ms: number, latencies: number[] | null): Promise<number> {
  const started = performance.now();
  const deadline = started + ms;
  let counter = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < deadline) {
        const i = counter++;
        const t = performance.now();
        await op(i);
        latencies?.push(performance.now() - t);
      }
    }),
  );
  return performance.now() - started;
}

/**
 * Measures a group (a baseline and the operations compared with it) in interleaved rounds,
 * so that load from other processes on a shared machine falls on all of them alike.
 */
async function measureGroup(group: Array<[name: string, op: Op]>, rounds = 4): Promise<Result[]> {
  const state = group.map(([name, op]) => ({ name, op, latencies: [] as number[], elapsed: 0 }));
  for (const s of state) await drive(s.op, 200, null);
  for (let r = 0; r < rounds; r++) {
    for (const s of state) s.elapsed += await drive(s.op, (SECONDS * 1000) / rounds, s.latencies);
  }
  return state.map((s) => {
    const sorted = Float64Array.from(s.latencies).sort();
    const result: Result = {
      name: s.name,
      ops: s.latencies.length,
      opsPerSec: s.latencies.length / (s.elapsed / 1000),
      p50Ms: quantile(sorted, 0.5),
      p99Ms: quantile(sorted, 0.99),
    };
    process.stdout.write(`  ${result.name}: ${Math.round(result.opsPerSec)} ops/s\n`);
    return result;
  });
}

function compare(result: Result, baseline: Result, target: string, met?: (ratio: number) => boolean): Result {
  const ratio = result.opsPerSec / baseline.opsPerSec;
  return { ...result, baseline: baseline.name, ratio, target, ...(met ? { met: met(ratio) } : {}) };
}

async function main(): Promise<void> {
  const dbName = `as_bench_${Date.now().toString(36)}`;
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${dbName}`);
  const url = new URL(ADMIN_URL);
  url.pathname = `/${dbName}`;
  const prefix = `as_bench:${Date.now().toString(36)}:`;
  const env = { DATABASE_URL: url.toString(), REDIS_URL, KEY_PREFIX: prefix, LOG_LEVEL: 'silent' };

  // near: the full stack (near cache → Redis → PostgreSQL); redisOnly: no near cache, so
  // every get is a Redis read; pgOnly: no Redis and no cache, so every get is PostgreSQL.
  const near = await createSessions({ env });
  const redisOnly = await createSessions({ env: { ...env, CACHE_MAX_ENTRIES: '0' } });
  const pgOnly = await createSessions({ env: { DATABASE_URL: env.DATABASE_URL, CACHE_MAX_ENTRIES: '0' } });
  const results: Result[] = [];
  try {
    const redis = redisOnly.redis?.commands;
    if (!redis) throw new Error('no Redis connection');
    await redisOnly.db.exec(`CREATE TABLE bench_raw (id uuid PRIMARY KEY, title text, n bigint NOT NULL DEFAULT 0,
      metadata jsonb NOT NULL DEFAULT '{}', created_at timestamptz NOT NULL DEFAULT now())`);

    const ids: string[] = [];
    for (let i = 0; i < SESSIONS; i += 100) {
      const batch = await Promise.all(Array.from({ length: 100 }, () => near.create({ userId: 'bench', title: 'bench' })));
      ids.push(...batch.map((s) => s.id));
    }
    await redisOnly.db.query(
      `INSERT INTO bench_raw (id, title) SELECT (x)::uuid, 'bench' FROM jsonb_array_elements_text($1::jsonb) x`,
      [JSON.stringify(ids)],
    );
    const pick = (i: number) => ids[(i * 7919) % ids.length] as string;
    const hot = ids.slice(0, 64);
    const pickHot = (i: number) => hot[i % hot.length] as string;
    const snapshot = JSON.stringify(await near.get(ids[0] as string));
    const rawKey = `${prefix}raw`;
    await redis.set(rawKey, `1:${snapshot}`);
    for (const id of hot) await near.get(id);

    process.stdout.write(`agent-sessions bench: concurrency ${CONCURRENCY}, ${SECONDS} s per operation, interleaved rounds\n`);
    const [redisGet, nearGet, redisHit] = await measureGroup([
      ['raw Redis GET', () => redis.get(rawKey)],
      ['get (near-cache hit)', (i) => near.get(pickHot(i))],
      ['get (Redis hit)', (i) => redisOnly.get(pick(i))],
    ]);
    const [pkSelect, pgGet] = await measureGroup([
      ['raw PK SELECT', (i) => pgOnly.db.query('SELECT * FROM sessions WHERE id = $1', [pick(i)])],
      ['get (PostgreSQL, no cache)', (i) => pgOnly.get(pick(i))],
    ]);
    const [rawInsert, create, createPg] = await measureGroup([
      ['raw single-row INSERT', () => redisOnly.db.query(`INSERT INTO bench_raw (id, title, metadata) VALUES ($1, $2, $3::jsonb)`, [randomUUID(), 'x', '{}'])],
      ['create (session + outbox, cached)', () => redisOnly.create({ userId: 'bench', title: 'x' })],
      ['create (PostgreSQL only, no cache)', () => pgOnly.create({ userId: 'bench', title: 'x' })],
    ]);
    const [rawUpdate, update, increment, incrementPg] = await measureGroup([
      ['raw UPDATE … RETURNING', (i) => redisOnly.db.query('UPDATE bench_raw SET n = n + 1 WHERE id = $1 RETURNING *', [pick(i)])],
      ['update (title)', (i) => redisOnly.update(pick(i), { title: `t${i}` })],
      ['counter increment', (i) => redisOnly.incrementCounters(pick(i), { totalTurns: 1 })],
      ['counter increment (PostgreSQL only)', (i) => pgOnly.incrementCounters(pick(i), { totalTurns: 1 })],
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
    if (!redisGet || !nearGet || !redisHit || !pkSelect || !pgGet || !rawInsert || !create || !createPg) throw new Error('missing result');
    if (!rawUpdate || !update || !increment || !incrementPg || !rawLock || !lock) throw new Error('missing result');

    results.push(
      redisGet,
      compare(nearGet, redisGet, '≥ 10× raw GET', (r) => r >= 10),
      compare(redisHit, redisGet, '≥ 1/1.5 of raw GET', (r) => r >= 1 / 1.5),
      pkSelect,
      compare(pgGet, pkSelect, '≥ 1/1.5 of PK SELECT', (r) => r >= 1 / 1.5),
      rawInsert,
      compare(create, rawInsert, '≥ 0.8× raw INSERT', (r) => r >= 0.8),
      compare(createPg, rawInsert, '(the same without any cache)'),
      rawUpdate,
      compare(update, rawUpdate, '(no target)'),
      compare(increment, rawUpdate, '≥ 1/1.5 of UPDATE', (r) => r >= 1 / 1.5),
      compare(incrementPg, rawUpdate, '(the same without any cache)'),
      rawLock,
      compare(lock, rawLock, '(no target)'),
    );
    const table = [
      ['operation', 'ops/s', 'p50 ms', 'p99 ms', 'vs baseline', 'ratio', 'target'],
      ...results.map((r) => [
        r.name,
        String(Math.round(r.opsPerSec)),
        r.p50Ms.toFixed(3),
        r.p99Ms.toFixed(3),
        r.baseline ?? '(baseline)',
        r.ratio === undefined ? '' : `${r.ratio.toFixed(2)}×`,
        r.target === undefined ? '' : r.met === undefined ? r.target : `${r.target}: ${r.met ? 'met' : 'MISSED'}`,
      ]),
    ];
    const widths = table[0]!.map((_, c) => Math.max(...table.map((row) => row[c]!.length)));
    process.stdout.write(
      `\n${table.map((row) => row.map((cell, c) => (c === 0 || c === 4 || c === 6 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ')).join('\n')}\n`,
    );
    const dir = path.resolve('bench/results');
    mkdirSync(dir, { recursive: true });
    const file = path.join(dir, `bench-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    writeFileSync(
      file,
      JSON.stringify({ at: new Date().toISOString(), concurrency: CONCURRENCY, secondsPerOperation: SECONDS, node: process.version, results }, null, 2),
    );
    process.stdout.write(`\nwritten to ${path.relative(process.cwd(), file)}\n`);
  } finally {
    // The bench's keys live under its own prefix on a Redis that may be shared.
    const redis = redisOnly.redis?.commands;
    if (redis) {
      for await (const keys of redis.scanIterator({ MATCH: `${prefix}*`, COUNT: 1_000 })) {
        if (keys.length > 0) await redis.del(keys);
      }
    }
    await near.close();
    await redisOnly.close();
    await pgOnly.close();
    await admin.query(`DROP DATABASE ${dbName} WITH (FORCE)`);
    await admin.end();
  }
}

await main();
