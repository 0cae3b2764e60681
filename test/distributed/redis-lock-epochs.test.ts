/**
 * Fencing tokens of Redis leases (epoch * 2^32 + counter; the counter from Redis, the epoch in
 * PostgreSQL) across everything that can make Redis forget counters: a restart that comes
 * back empty, a restart from an older RDB, keys lost under instances that noticed nothing, and
 * an outage during which the PostgreSQL lease hands out tokens. Each test runs its own
 * redis-server (or, for the lost keys, its own key prefix on the shared one).
 */
import { createClient } from 'redis';
import { describe, expect, it, onTestFinished } from 'vitest';
import { RedisKeys } from '../../src/adapters/redis/connection.js';
import { EPOCH_SPAN, epochOf } from '../../src/core/fencing.js';
import { sessionKey } from '../../src/core/ids.js';
import { createSessions, internals, type Sessions } from '../../src/internal.js';
import { freshDatabase, requireServices, serviceUrl, uniqueKeyPrefix } from '../setup/harness.js';
import { OwnRedis, requireRedisBinaries, waitForRedis } from '../redis/redis-servers.js';
import { codeOf, holdLock } from './lock-scenarios.js';

const suite = 'distributed/redis-lock-epochs';
const ready = requireServices(['postgres', 'redis'], suite) && requireRedisBinaries(['redis-server'], suite);

async function redisCommand(url: string, args: string[]): Promise<unknown> {
  const client = createClient({ url });
  await client.connect();
  try {
    return await client.sendCommand(args);
  } finally {
    client.destroy();
  }
}

/**
 * A fresh database and `count` instances (a, then b) on `redisUrl` under `prefix`; after the
 * test the instances close, then `stop` runs (a redis-server of the test's own), then the
 * database is dropped.
 */
async function instances(count: 1 | 2, redisUrl: string, prefix: string, extra: Record<string, string> = {}, stop?: () => Promise<void>): Promise<Sessions[]> {
  const db = await freshDatabase();
  const opened: Sessions[] = [];
  onTestFinished(async () => {
    for (const s of opened) await s.close();
    await stop?.();
    await db.drop();
  });
  const env = { DATABASE_URL: db.url, REDIS_URL: redisUrl, KEY_PREFIX: prefix, ...extra };
  for (const id of ['a', 'b'].slice(0, count)) opened.push(await createSessions({ env: { ...env, INSTANCE_ID: id } }));
  return opened;
}

/** Instance a on the shared Redis, under a key prefix of its own. */
async function oneInstance(extra: Record<string, string> = {}): Promise<{ a: Sessions; prefix: string }> {
  const prefix = uniqueKeyPrefix();
  const [a] = await instances(1, serviceUrl('redis'), prefix, extra);
  return { a: a as Sessions, prefix };
}

/** Instances a and b on the shared Redis (`own: false`, under a prefix of their own) or on a redis-server of their own. */
async function twoInstances(): Promise<{ a: Sessions; b: Sessions; redis: OwnRedis; prefix: string }>;
async function twoInstances(own: false): Promise<{ a: Sessions; b: Sessions; prefix: string }>;
async function twoInstances(own = true): Promise<{ a: Sessions; b: Sessions; redis?: OwnRedis; prefix: string }> {
  const prefix = uniqueKeyPrefix();
  if (!own) {
    const [a, b] = await instances(2, serviceUrl('redis'), prefix);
    return { a: a as Sessions, b: b as Sessions, prefix };
  }
  const redis = await OwnRedis.start();
  try {
    const [a, b] = await instances(2, redis.url, prefix, {}, () => redis.stop());
    return { a: a as Sessions, b: b as Sessions, redis, prefix };
  } catch (err) {
    await redis.stop();
    throw err;
  }
}

/** Takes the lease and hands back its token, then releases it. */
function token(via: Sessions, id: string): Promise<number> {
  return via.withSessionLock(id, async ({ fencingToken }) => fencingToken, { timeoutMs: 10_000 });
}

async function epochRows(via: Sessions): Promise<number[]> {
  const rows = await internals(via).db.query<{ epoch: string }>('SELECT epoch FROM session_lock_epochs');
  return rows.map((r) => Number(r.epoch));
}

/** Retries `fn` (a lease) until it resolves, e.g. while the breaker has not yet seen the outage. */
async function eventually<T>(fn: () => Promise<T>, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

describe.skipIf(!ready)(suite, () => {
  it('a lease costs no PostgreSQL write: the session row is untouched and session_locks stays empty', async () => {
    const { a } = await oneInstance();
    const s = await a.create();
    await token(a, s.id); // the first lease of the keyspace installs an epoch (one write, once)
    const rowBefore = await internals(a).db.query<{ xmin: string; fence: string }>('SELECT xmin, fence FROM sessions WHERE id = $1', [s.id]);
    const tokens = [await token(a, s.id), await token(a, s.id), await token(a, s.id)];
    const rowAfter = await internals(a).db.query<{ xmin: string; fence: string }>('SELECT xmin, fence FROM sessions WHERE id = $1', [s.id]);
    expect(rowAfter).toEqual(rowBefore);
    expect(await internals(a).db.query('SELECT 1 FROM session_locks')).toHaveLength(0);
    expect(tokens[1]).toBe((tokens[0] as number) + 1);
    expect(tokens[2]).toBe((tokens[1] as number) + 1);
    expect(epochOf(tokens[0] as number)).toBe((await epochRows(a))[0]);
  });

  it('Redis restarted empty: later tokens are above every earlier one, and a token issued before the restart loses to a newer holder', async () => {
    const { a, b, redis } = await twoInstances();
    const s = await a.create();
    // Issued and given back unused, then one held across the restart, never used before it.
    const issued = [await token(a, s.id), await token(b, s.id)];
    const old = await holdLock(a, s.id, { timeoutMs: 10_000 });
    issued.push(old.token);
    await redis.kill();
    await redis.restart();
    await waitForRedis([a, b]);

    const newer = await holdLock(b, s.id, { timeoutMs: 10_000 });
    for (const t of issued) expect(newer.token).toBeGreaterThan(t);
    // Redis handed out the newer token (no PostgreSQL lease), in a new epoch.
    expect(epochOf(newer.token)).toBeGreaterThan(epochOf(old.token));
    // The old holder writes while the newer one holds the lease but has not written: refused.
    expect(await codeOf(a.update(s.id, { title: 'old' }, { fencingToken: old.token }))).toBe('stale_fencing_token');
    const written = await b.update(s.id, { title: 'new' }, { fencingToken: newer.token });
    newer.release();
    await newer.done;
    // After the newer holder wrote and let go: still refused, by the row itself.
    expect(await codeOf(a.update(s.id, { title: 'old' }, { fencingToken: old.token }))).toBe('stale_fencing_token');
    old.release();
    await old.done;
    const final = await b.get(s.id);
    expect(final.title).toBe('new');
    expect(final.version).toBe(written.version);
  });

  it('a token issued before an empty restart and used first is accepted, then refused once the newer holder wrote', async () => {
    const { a, b, redis } = await twoInstances();
    const s = await a.create();
    const old = await token(a, s.id);
    const newestBefore = await token(a, s.id);
    await redis.kill();
    await redis.restart();
    await waitForRedis([a, b]);
    // Redis forgot both; the row has seen neither. The newest of them writes first.
    await a.update(s.id, { title: 'before' }, { fencingToken: newestBefore });
    expect(await codeOf(a.update(s.id, { title: 'older' }, { fencingToken: old }))).toBe('stale_fencing_token');
    const next = await token(b, s.id);
    expect(next).toBeGreaterThan(newestBefore);
    await b.update(s.id, { title: 'after' }, { fencingToken: next });
    expect(await codeOf(a.update(s.id, { title: 'late' }, { fencingToken: newestBefore }))).toBe('stale_fencing_token');
    expect((await a.get(s.id)).title).toBe('after');
  });

  it('Redis restarted from an older RDB (an older counter, the same epoch): the epoch moves, no counter is reused', async () => {
    const { a, b, redis } = await twoInstances();
    const s = await a.create();
    const issued = [await token(a, s.id)];
    await redisCommand(redis.url, ['SAVE']);
    for (let i = 0; i < 3; i++) issued.push(await token(i % 2 ? a : b, s.id));
    const epochBefore = (await epochRows(a))[0] as number;
    await redis.kill();
    await redis.restart();
    await waitForRedis([a, b]);
    const after = [await token(b, s.id), await token(a, s.id)];
    const highest = Math.max(...issued);
    for (const t of after) expect(t).toBeGreaterThan(highest);
    expect(after[1]).toBeGreaterThan(after[0] as number);
    expect(Math.max(...(await epochRows(a)))).toBeGreaterThan(epochBefore);
  });

  it('lock keys lost under instances that noticed nothing: every next lease goes to PostgreSQL for a new epoch', async () => {
    const { a, b, prefix } = await twoInstances(false);
    const s = await a.create();
    const issued = [await token(a, s.id), await token(b, s.id), await token(a, s.id)];
    // What a restart loses, without a restart: no reconnect, no server check on either instance.
    const keys = new RedisKeys(prefix);
    await redisCommand(serviceUrl('redis'), ['DEL', keys.global('lock-epoch'), keys.sessionPart(sessionKey('default', s.id), 'fence')]);
    const epochs = await epochRows(a);
    const after = [await token(b, s.id), await token(a, s.id)];
    for (const t of after) expect(t).toBeGreaterThan(Math.max(...issued));
    expect(after[1]).toBeGreaterThan(after[0] as number);
    expect(Math.max(...(await epochRows(a)))).toBeGreaterThan(Math.max(...epochs));
  });

  it('a lease on a missing session leaves no Redis key behind', async () => {
    const { a, prefix } = await oneInstance();
    await token(a, (await a.create()).id); // installs the epoch
    const id = crypto.randomUUID();
    expect(await codeOf(token(a, id))).toBe('session_not_found');
    const keys = new RedisKeys(prefix);
    const key = sessionKey('default', id);
    expect(await redisCommand(serviceUrl('redis'), ['EXISTS', keys.sessionPart(key, 'lock'), keys.sessionPart(key, 'fence')])).toBe(0);
    // Created afterwards under that id: its first lease is the epoch's first token.
    await a.create({ id });
    expect((await token(a, id)) % EPOCH_SPAN).toBe(1);
  });

  it('a counter that reached 2^32 moves the epoch instead of spilling into the next one', async () => {
    const { a, prefix } = await oneInstance();
    const s = await a.create();
    const first = await token(a, s.id);
    const counterKey = new RedisKeys(prefix).sessionPart(sessionKey('default', s.id), 'fence');
    await redisCommand(serviceUrl('redis'), ['HSET', counterKey, 'n', String(EPOCH_SPAN - 2)]);
    const last = await token(a, s.id);
    expect(last).toBe(epochOf(first) * EPOCH_SPAN + EPOCH_SPAN - 1);
    const next = await token(a, s.id);
    expect(epochOf(next)).toBeGreaterThan(epochOf(last));
    expect(next % EPOCH_SPAN).toBe(1);
  });

  it('Redis unreachable: the PostgreSQL lease hands out tokens above Redis ones; Redis back with its data: tokens above those', async () => {
    const { a, b, redis } = await twoInstances();
    let paused = false;
    try {
      const s = await a.create();
      const fromRedis = [await token(a, s.id), await token(b, s.id)];
      redis.pause();
      paused = true;
      // Once the breaker opened, the lease is a session_locks row and the token comes from the row.
      const fromPostgres = [await eventually(() => token(a, s.id)), await eventually(() => token(a, s.id))];
      for (const t of fromPostgres) expect(t).toBeGreaterThan(Math.max(...fromRedis));
      expect(fromPostgres[1]).toBeGreaterThan(fromPostgres[0] as number);
      expect(epochOf(fromPostgres[0] as number)).toBeGreaterThan(epochOf(fromRedis[1] as number));
      // Redis counts in even epochs, the PostgreSQL lease in the odd one above: never the same token.
      expect(epochOf(fromRedis[1] as number) % 2).toBe(0);
      expect(epochOf(fromPostgres[0] as number) % 2).toBe(1);
      redis.resume();
      paused = false;
      await waitForRedis([a, b]);
      // Same server, same data (epoch and counters): the counter's next token would be below
      // the row's; the epoch moves instead.
      const back = [await token(b, s.id), await token(a, s.id), await token(b, s.id)];
      expect(back[0]).toBeGreaterThan(fromPostgres[1] as number);
      expect(back[1]).toBe((back[0] as number) + 1);
      expect(back[2]).toBe((back[1] as number) + 1);
      expect((back[0] as number) % EPOCH_SPAN).toBe(1);
      expect(epochOf(back[0] as number) % 2).toBe(0);
    } finally {
      if (paused) redis.resume();
    }
  });

  it("a deleted session's lease counter goes with its row: purge, batch purge, retention sweep, erasure", async () => {
    const { a, prefix } = await oneInstance({ SWEEP_INTERVAL_MS: '0', RETENTION_DAYS: '30' });
    const keys = new RedisKeys(prefix);
    const fence = (id: string) => keys.sessionPart(sessionKey('default', id), 'fence');
    const exists = async (id: string) => Number(await redisCommand(serviceUrl('redis'), ['EXISTS', fence(id)]));
    const purged = await a.create();
    const batch = [await a.create(), await a.create()];
    const swept = await a.create();
    const erased = await a.create({ userId: `erase-me-${crypto.randomUUID()}` });
    const kept = await a.create();
    const all = [purged, ...batch, swept, erased, kept];
    const issued = new Map<string, number>();
    for (const s of all) {
      await token(a, s.id);
      issued.set(s.id, await token(a, s.id));
      expect(await exists(s.id), s.id).toBe(1);
    }

    expect(await a.purge(purged.id)).toBe(true);
    expect(await exists(purged.id)).toBe(0);

    expect((await a.deleteMany(batch.map((s) => s.id), { purge: true })).deleted).toHaveLength(2);
    for (const s of batch) expect(await exists(s.id)).toBe(0);

    await a.terminate(swept.id, 'done');
    await internals(a).db.query(`UPDATE sessions SET ended_at = now() - interval '31 days' WHERE id = $1`, [swept.id]);
    expect(await a.sweeper.runOnce()).toMatchObject({ purge_ended_sessions: 1 });
    expect(await exists(swept.id)).toBe(0);

    expect(await a.admin.eraseUser(erased.userId as string)).toMatchObject({ sessions: 1 });
    expect(await exists(erased.id)).toBe(0);

    // Terminating without purging deletes no row: the counter stays, and the next token is above.
    expect((await a.deleteMany([kept.id])).deleted).toEqual([kept.id]);
    expect(await exists(kept.id)).toBe(1);
    expect(await token(a, kept.id)).toBe((issued.get(kept.id) as number) + 1);

    // Created again under a purged id: a new row (fence 0), whose first lease is the epoch's
    // first token, and which its holder can write with.
    await a.create({ id: purged.id });
    const again = await token(a, purged.id);
    expect(again % EPOCH_SPAN).toBe(1);
    expect(epochOf(again)).toBe(epochOf(issued.get(purged.id) as number));
    expect((await a.update(purged.id, { title: 'again' }, { fencingToken: again })).title).toBe('again');
  });

  it('an expired session keeps its lease counter: its row stays, so its tokens keep rising', async () => {
    const { a, prefix } = await oneInstance({ SWEEP_INTERVAL_MS: '0', RETENTION_DAYS: '30', TIMEOUT_WARNING_SECONDS: '0' });
    const s = await a.create({ idleTimeoutSeconds: 1 });
    await token(a, s.id);
    // Handed out and never used: a later token must still be above it.
    const unused = await token(a, s.id);
    const deadline = Date.now() + 20_000;
    while ((await a.get(s.id)).status !== 'expired') {
      if (Date.now() > deadline) throw new Error('the sweep did not expire the session within 20 s');
      await a.sweeper.runOnce();
    }
    // The same passes ran the retention purge: an expired session is not ended long enough.
    expect(await a.find(s.id)).not.toBeNull();
    const fence = new RedisKeys(prefix).sessionPart(sessionKey('default', s.id), 'fence');
    expect(await redisCommand(serviceUrl('redis'), ['EXISTS', fence])).toBe(1);
    expect(await token(a, s.id)).toBe(unused + 1);
  });
});
