/**
 * A Redis that comes back with OLD data (a restart that reloads its RDB file, a failover to
 * a lagging replica) must not serve a version older than one already acknowledged. Each test
 * starts its own redis-server in a temp dir: SAVE at v1, update to v2 (Redis holds v2), then
 * SIGKILL and restart from the same dir, so Redis reloads v1.
 */
import { RedisKeys } from '../../src/adapters/redis/connection.js';
import { sessionKey } from '../../src/core/ids.js';
import { createClient } from 'redis';
import { describe, expect, it } from 'vitest';
import { createSessions, type Sessions, internals } from '../../src/internal.js';
import { freshDatabase, requireServices, uniqueKeyPrefix } from '../setup/harness.js';
import { OwnRedis, requireRedisBinaries, waitForRedis } from '../redis/redis-servers.js';
import { createdSnapshot } from '../runs/support.js';

const suite = 'distributed/redis-stale-data';
const ready = requireServices(['postgres'], suite) && requireRedisBinaries(['redis-server'], suite);

async function rawGet(url: string, key: string): Promise<string | null> {
  const client = createClient({ url });
  await client.connect();
  try {
    return await client.get(key);
  } finally {
    client.destroy();
  }
}

async function save(url: string): Promise<void> {
  const client = createClient({ url });
  await client.connect();
  try {
    await client.sendCommand(['SAVE']);
  } finally {
    client.destroy();
  }
}

describe.skipIf(!ready)(suite, () => {
  it('restart with an older RDB: running instances and a freshly started one serve the acknowledged version', async () => {
    const redis = await OwnRedis.start();
    const db = await freshDatabase();
    const prefix = uniqueKeyPrefix();
    const env = { DATABASE_URL: db.url, REDIS_URL: redis.url, KEY_PREFIX: prefix };
    const a = await createSessions({ env: { ...env, INSTANCE_ID: 'a' } });
    const b = await createSessions({ env: { ...env, INSTANCE_ID: 'b', CACHE_MAX_ENTRIES: '0' } });
    let c: Sessions | null = null;
    try {
      const s = await a.create({ title: 'v1' });
      const key = new RedisKeys(prefix).session(sessionKey('default', s.id));
      await createdSnapshot(() => rawGet(redis.url, key), s.version);
      await save(redis.url);
      const updated = await a.update(s.id, { title: 'v2' });
      // The update reached Redis: no repair is involved in what follows.
      expect((await rawGet(redis.url, key))?.startsWith(`${updated.version}:`)).toBe(true);
      expect(await internals(a).db.query('SELECT 1 FROM cache_repairs')).toHaveLength(0);

      await redis.kill();
      await redis.restart();
      // The restarted server really holds the older snapshot (until we clear it).
      await waitForRedis([a, b]);
      for (const via of [a, b]) {
        const got = await via.get(s.id);
        expect(got.version).toBe(updated.version);
        expect(got.title).toBe('v2');
      }

      // Every instance stopped, Redis restarted from the same old RDB, a new instance starts:
      // it has never seen this Redis, yet must not trust what it holds.
      await a.close();
      await b.close();
      await redis.kill();
      await redis.restart();
      expect((await rawGet(redis.url, key))?.startsWith(`${s.version}:`)).toBe(true);
      c = await createSessions({ env: { ...env, INSTANCE_ID: 'c' } });
      await waitForRedis([c]);
      const got = await c.get(s.id);
      expect(got.version).toBe(updated.version);
      expect(got.title).toBe('v2');
    } finally {
      await a.close();
      await b.close();
      await c?.close();
      await redis.stop();
      await db.drop();
    }
  });
});
