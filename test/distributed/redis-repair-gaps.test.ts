/**
 * Writes whose Redis update fails while Redis itself stays up for everyone else. The
 * failure is real and deterministic: the writer (and the reader) connect to our own
 * redis-server as an ACL user that may not run scripts, so their casSet fails (NOPERM) on
 * every call, while reads work; nobody can repair the entry in Redis, so only what the
 * instances know about the pending repair keeps the reader from serving the older version.
 */
import { createClient } from 'redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSessions, type Sessions, internals } from '../../src/internal.js';
import { freshDatabase, requireServices, uniqueKeyPrefix, within, type FreshDatabase } from '../setup/harness.js';
import { OwnRedis, requireRedisBinaries } from '../redis/redis-servers.js';

const suite = 'distributed/redis-repair-gaps';
const ready = requireServices(['postgres'], suite) && requireRedisBinaries(['redis-server'], suite);

describe.skipIf(!ready)(suite, () => {
  let redis: OwnRedis;
  let db: FreshDatabase;
  let env: Record<string, string>;
  let noScriptUrl: string;
  const opened: Sessions[] = [];

  async function open(extra: Record<string, string>): Promise<Sessions> {
    const s = await createSessions({ env: { ...env, ...extra } });
    opened.push(s);
    return s;
  }

  /** A session at v1, cached in Redis by an instance that may write there, which then leaves. */
  async function cachedAtV1(): Promise<{ id: string; version: number }> {
    const full = await createSessions({ env: { ...env, INSTANCE_ID: 'full' } });
    try {
      const s = await full.create({ title: 'v1' });
      await full.get(s.id);
      return { id: s.id, version: s.version };
    } finally {
      await full.close();
    }
  }

  beforeAll(async () => {
    redis = await OwnRedis.start();
    db = await freshDatabase();
    env = { DATABASE_URL: db.url, REDIS_URL: redis.url, KEY_PREFIX: uniqueKeyPrefix() };
    const admin = createClient({ url: redis.url });
    await admin.connect();
    await admin.sendCommand(['ACL', 'SETUSER', 'noscript', 'on', 'nopass', '~*', '&*', '+@all', '-@scripting']);
    admin.destroy();
    const url = new URL(redis.url);
    url.username = 'noscript';
    url.password = 'x';
    noScriptUrl = url.toString();
  });

  afterAll(async () => {
    for (const s of opened) await s.close();
    await redis?.stop();
    await db?.drop();
  });

  it('a failed Redis update with its repair recorded: no other instance serves the older version after the ack', async () => {
    const { id } = await cachedAtV1();
    const writer = await open({ INSTANCE_ID: 'writer', REDIS_URL: noScriptUrl });
    const reader = await open({ INSTANCE_ID: 'reader', REDIS_URL: noScriptUrl, CACHE_MAX_ENTRIES: '0' });
    expect((await reader.get(id)).title).toBe('v1');
    const updated = await writer.update(id, { title: 'v2' });
    expect(await internals(writer).db.query('SELECT 1 FROM cache_repairs')).toHaveLength(1);
    // The repair's notification reaches the reader within the notification delivery time
    // (milliseconds; seconds allowed for a loaded machine). Redis still holds v1 and nobody
    // here can repair it, so without the notification the reader would serve v1 for good.
    await within(10_000, async () => (await reader.get(id)).version === updated.version, 20);
    for (let i = 0; i < 5; i++) expect((await reader.get(id)).title).toBe('v2');
  });

  it('the repair itself cannot be recorded: the writer keeps it and records it before its Redis is trusted again', async () => {
    const { id } = await cachedAtV1();
    const writer = await open({ INSTANCE_ID: 'writer2', REDIS_URL: noScriptUrl });
    const reader = await open({ INSTANCE_ID: 'reader2', REDIS_URL: noScriptUrl, CACHE_MAX_ENTRIES: '0' });
    expect((await reader.get(id)).title).toBe('v1');
    await internals(writer).db.query('ALTER TABLE cache_repairs RENAME TO cache_repairs_away');
    let updated;
    try {
      updated = await writer.update(id, { title: 'v2' });
    } finally {
      await internals(writer).db.query('ALTER TABLE cache_repairs_away RENAME TO cache_repairs');
    }
    // The write is in PostgreSQL; the writer no longer trusts Redis until the repair is
    // recorded, and recording it tells every instance.
    expect((await writer.health()).dependencies.find((d) => d.name === 'redis')?.ok).toBe(false);
    await within(15_000, async () => {
      await writer.get(id);
      return (await reader.get(id)).version === updated.version;
    }, 20);
    expect(await internals(writer).db.query('SELECT 1 FROM cache_repairs WHERE session_id = $1', [id])).toHaveLength(1);
  });
});
