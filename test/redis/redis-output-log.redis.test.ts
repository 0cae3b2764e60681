/**
 * The Redis output log's stream expiry: renewed on a stream's first write, not on every write
 * within a sixtieth of the TTL, again after a reconnect (maybe to a Redis that lost it), and on
 * a session's first event (a stream erased and started again under the same id).
 */
import { randomUUID } from 'node:crypto';
import { createClient } from 'redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GuardedRedis } from '../../src/adapters/redis/guarded-redis.js';
import { RedisOutputLog } from '../../src/adapters/redis/redis-output-log.js';
import { sessionKey } from '../../src/core/ids.js';
import type { OutputEvent } from '../../src/core/runs.js';
import { requireServices, serviceUrl } from '../setup/harness.js';

const suite = 'redis/output-log';
const ready = requireServices(['redis'], suite);

function event(seq: number): OutputEvent {
  return { seq, runId: randomUUID(), type: 'text', data: { k: seq }, createdAt: new Date().toISOString() };
}

describe.skipIf(!ready)(suite, () => {
  const prefix = `as_test_outlog:${randomUUID()}:`;
  const ttlMs = 600_000;
  let redis: GuardedRedis;
  let log: RedisOutputLog;
  let admin: ReturnType<typeof createClient>;

  beforeAll(async () => {
    redis = new GuardedRedis({ url: serviceUrl('redis'), cluster: false, keyPrefix: prefix });
    await redis.ready();
    log = new RedisOutputLog(redis, { ttlMs });
    admin = createClient({ url: serviceUrl('redis') });
    await admin.connect();
  });

  afterAll(async () => {
    await log?.close();
    if (admin?.isOpen) {
      for await (const keys of admin.scanIterator({ MATCH: `${prefix}*`, COUNT: 1000 })) if (keys.length) await admin.del(keys);
      await admin.quit();
    }
    await redis?.close();
  });

  it('renews a stream’s expiry on its first write and after a reconnect, not on every write', async () => {
    const session = sessionKey('t1', `s-${randomUUID()}`);
    const key = redis.keys.sessionPart(session, 'out');
    await log.publish(session, [event(1), event(2)]);
    const first = await admin.pTTL(key);
    expect(first).toBeGreaterThan(0);
    expect(first).toBeLessThanOrEqual(ttlMs);
    expect(await admin.xLen(key)).toBe(2);

    // Within a sixtieth of the TTL the next write is one XADD: a stream without expiry keeps none.
    await admin.persist(key);
    await log.publish(session, [event(3)]);
    expect(await admin.pTTL(key)).toBe(-1);
    expect(await admin.xLen(key)).toBe(3);

    // A reconnect (the server may have lost the streams): the next write renews again.
    const id = await redis.run((r) => r.clientId(), 'write');
    await admin.sendCommand(['CLIENT', 'KILL', 'ID', String(id)]);
    let seq = 4;
    const deadline = Date.now() + 10_000;
    for (;;) {
      // Refused while the breaker checks the new connection; tried again until it is back.
      const published = await log.publish(session, [event(seq)]).then(() => true, () => false);
      if (published) {
        seq++;
        if ((await admin.pTTL(key)) > 0) break;
      }
      if (Date.now() > deadline) throw new Error('the stream’s expiry was not renewed after the reconnect');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(await admin.pTTL(key)).toBeLessThanOrEqual(ttlMs);
  });

  it('a stream erased and started again under the same id gets its expiry at once, on any instance', async () => {
    const session = sessionKey('t1', `s-${randomUUID()}`);
    const key = redis.keys.sessionPart(session, 'out');
    // Another instance of the same keyspace, which saw no erasure.
    const other = new RedisOutputLog(redis, { ttlMs });
    try {
      await other.publish(session, [event(1)]);
      await log.publish(session, [event(2)]);
      expect(await admin.pTTL(key)).toBeGreaterThan(0);
      // Erased here (the session deleted), then created again under its id: seq starts at 1.
      await log.discard([session]);
      expect(await admin.exists(key)).toBe(0);
      await other.publish(session, [event(1), event(2)]);
      expect(await admin.pTTL(key)).toBeGreaterThan(0);
      await admin.unlink(key);
      await log.publish(session, [event(1)]);
      expect(await admin.pTTL(key)).toBeGreaterThan(0);
    } finally {
      await other.close();
    }
  });
});
