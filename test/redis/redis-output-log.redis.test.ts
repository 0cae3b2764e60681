/**
 * The Redis output log. Its stream expiry: renewed on a stream's first write, not on every
 * write within a sixtieth of the TTL, again after a reconnect (maybe to a Redis that lost it),
 * and on a session's first event (a stream erased and started again under the same id). Its
 * live delivery: a batch reaches a reader on another instance as a message; a reader joining
 * gets what the stream held before it subscribed; after the subscriber reconnects, what was
 * added meanwhile. The message format keeps each event and its data's JSON text.
 */
import { randomUUID } from 'node:crypto';
import { createClient } from 'redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GuardedRedis } from '../../src/adapters/redis/guarded-redis.js';
import { decodeLive, encodeLive, RedisOutputLog } from '../../src/adapters/redis/redis-output-log.js';
import { sessionKey } from '../../src/core/ids.js';
import { noteDataJson, outputDataJson, type OutputEvent } from '../../src/core/runs.js';
import { requireServices, serviceUrl } from '../setup/harness.js';
import { OwnRedis, requireRedisBinaries } from './redis-servers.js';

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
    const key = redis.keys.sessionPart(session, 'batches');
    const batch = [event(1), event(2)];
    await log.publish(session, batch);
    const first = await admin.pTTL(key);
    expect(first).toBeGreaterThan(0);
    expect(first).toBeLessThanOrEqual(ttlMs);
    // One entry per batch, under its last seq.
    expect(await admin.xRange(key, '-', '+')).toEqual([{ id: '2-0', message: { m: encodeLive(batch) } }]);

    // Within a sixtieth of the TTL the next write is one XADD: a stream without expiry keeps none.
    await admin.persist(key);
    await log.publish(session, [event(3)]);
    expect(await admin.pTTL(key)).toBe(-1);
    expect(await admin.xLen(key)).toBe(2);

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
    const key = redis.keys.sessionPart(session, 'batches');
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

describe('redis/output-log message format', () => {
  it('carries each event and its data’s JSON text through a message, whatever the data holds', () => {
    const datas: unknown[] = [{ text: 'line one\nline two\r\n' }, 'a\u2028b\u001e\u001f', null, 42, [1, { deep: ['x'] }], { emoji: '🙂', quote: '"' }];
    const events = datas.map((data, i) => ({ seq: i + 7, runId: `run-${i}`, type: i === 2 ? 'tool_call' : 'text', data, createdAt: new Date(1_700_000_000_000 + i).toISOString() }));
    // One event's text as the runner's writer keeps it (key order of the runner's object).
    events[0] = noteDataJson(events[0] as OutputEvent, JSON.stringify(datas[0]));
    const decoded = decodeLive(encodeLive(events));
    expect(decoded).toEqual(events);
    expect(decoded?.map((e) => outputDataJson(e))).toEqual(datas.map((d) => JSON.stringify(d)));
  });

  it('refuses what is not a message of this format', () => {
    for (const bad of ['', 'nope', '[[1,"r","text","t"]]', '[[1,"r","text","t"]]\n{', '[["1","r","text","t"]]\n1', '{}\n1']) {
      expect(decodeLive(bad)).toBeNull();
    }
  });
});

const liveSuite = 'redis/output-log/live';
const liveReady = requireRedisBinaries(['redis-server'], liveSuite);

describe.skipIf(!liveReady)(liveSuite, () => {
  // A server of this test's own: killing the subscriber connections must not touch other suites'.
  let server: OwnRedis;
  let redisA: GuardedRedis;
  let redisB: GuardedRedis;
  let a: RedisOutputLog;
  let b: RedisOutputLog;
  let admin: ReturnType<typeof createClient>;
  const prefix = 'as_test_live:';

  beforeAll(async () => {
    server = await OwnRedis.start();
    redisA = new GuardedRedis({ url: server.url, cluster: false, keyPrefix: prefix });
    redisB = new GuardedRedis({ url: server.url, cluster: false, keyPrefix: prefix });
    await Promise.all([redisA.ready(), redisB.ready()]);
    a = new RedisOutputLog(redisA);
    b = new RedisOutputLog(redisB);
    await Promise.all([a.ready(), b.ready()]);
    admin = createClient({ url: server.url });
    await admin.connect();
  });

  afterAll(async () => {
    await b?.close();
    await a?.close();
    if (admin?.isOpen) await admin.quit();
    await redisB?.close();
    await redisA?.close();
    await server?.stop();
  });

  // Long waits: an empty answer at their end means the event did not come the way under test.
  const wait = { timeoutMs: 15_000 };

  /** Resolves once somebody subscribes the session's channel (within seconds). */
  async function subscribed(session: string, failure: string): Promise<void> {
    const channel = redisB.keys.sessionPart(session, 'live');
    const deadline = Date.now() + 10_000;
    while (((await admin.pubSubNumSub(channel))[channel] ?? 0) === 0) {
      if (Date.now() > deadline) throw new Error(failure);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  it('hands a batch published on one instance to a reader waiting on another', async () => {
    const session = sessionKey('t1', `s-${randomUUID()}`);
    const first = b.read(session, 0, wait);
    // The reader subscribes in the background: publish once it has.
    await subscribed(session, 'the reader never subscribed');
    const batch = [event(1), event(2)];
    await a.publish(session, batch);
    expect(await first).toEqual(batch);
    // Its next wait is answered by the next message.
    const next = b.read(session, 2, wait);
    await a.publish(session, [event(3)]);
    expect((await next).map((e) => e.seq)).toEqual([3]);
  });

  it('a reader that joins gets what the stream held before it subscribed, from its cursor on', async () => {
    const session = sessionKey('t1', `s-${randomUUID()}`);
    const batch = [event(1), event(2), event(3)];
    // Published while nobody listened: the messages went nowhere, the stream keeps the events.
    await a.publish(session, batch);
    expect(await b.read(session, 1, wait)).toEqual(batch.slice(1));
  });

  it('after its subscriber reconnects, a waiting reader gets what the stream got meanwhile', async () => {
    const session = sessionKey('t1', `s-${randomUUID()}`);
    await a.publish(session, [event(1)]);
    expect((await b.read(session, 0, wait)).map((e) => e.seq)).toEqual([1]);
    const waiting = b.read(session, 1, wait);
    // An entry whose message nobody got (as when the connection was down while it was sent).
    const lost = event(2);
    await admin.xAdd(redisB.keys.sessionPart(session, 'batches'), '2-0', { m: encodeLive([lost]) });
    await admin.sendCommand(['CLIENT', 'KILL', 'TYPE', 'pubsub']);
    expect(await waiting).toEqual([lost]);
    // Subscribed again: the next message arrives as such.
    await subscribed(session, 'the reader did not subscribe again');
    const next = b.read(session, 2, wait);
    await a.publish(session, [event(3)]);
    expect((await next).map((e) => e.seq)).toEqual([3]);
  });
});
