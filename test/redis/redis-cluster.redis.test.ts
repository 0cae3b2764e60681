/**
 * The Redis-specific suite against a Redis Cluster of three masters that this file starts
 * itself (redis-server --cluster-enabled yes, then redis-cli --cluster create), so keys of
 * different sessions land on different nodes and every script must stay within one slot.
 * Then the Cluster's reply deadline, which is per call (a connection per node): a timeout
 * counts as a failure once, a late reply after it neither resets the count nor counts again,
 * and a breaker listener that throws leaves every caller's promise settled. A reply that
 * must come at an exact moment (after its deadline) is a promise the test settles, handed
 * to `run` as the command's. Last, live output across two instances on the Cluster: the
 * stream read on join and the message after it, for sessions on every node.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { GuardedRedis, RedisTimeoutError } from '../../src/adapters/redis/guarded-redis.js';
import { RedisOutputLog } from '../../src/adapters/redis/redis-output-log.js';
import { sessionKey } from '../../src/core/ids.js';
import { requireServices, uniqueKeyPrefix } from '../setup/harness.js';
import { OwnRedisCluster, requireRedisBinaries } from './redis-servers.js';
import { redisCacheSuite } from './redis-cache.suite.js';

const suite = 'redis/cluster';
const ready = requireServices(['postgres'], suite) && requireRedisBinaries(['redis-server', 'redis-cli'], suite);

describe.skipIf(!ready)(suite, () => {
  let cluster: OwnRedisCluster | null = null;
  afterAll(async () => {
    await cluster?.stop();
  });
  redisCacheSuite(async () => {
    cluster = await OwnRedisCluster.start(3);
    return { url: cluster.url, cluster: true };
  });

  describe('reply deadline, per call', () => {
    const opened: GuardedRedis[] = [];
    afterEach(async () => {
      await Promise.all(opened.splice(0).map((g) => g.close()));
    });

    async function guarded(options: { onStateChange?: (state: string) => void } = {}): Promise<GuardedRedis> {
      if (!cluster) throw new Error('the cluster did not start');
      const g = new GuardedRedis({ url: cluster.url, cluster: true, keyPrefix: uniqueKeyPrefix(), commandTimeoutMs: 200, failureThreshold: 3, cooldownMs: 60_000, ...options });
      opened.push(g);
      await g.ready();
      expect(g.breaker.state).toBe('closed');
      return g;
    }

    /** A command's reply the test settles when it wants (after the deadline: a late reply). */
    function later<T>(): { promise: Promise<T>; resolve(v: T): void; reject(e: Error): void } {
      let resolve!: (v: T) => void;
      let reject!: (e: Error) => void;
      const promise = new Promise<T>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      return { promise, resolve, reject };
    }
    const thrown = (g: GuardedRedis) =>
      g.run(() => {
        throw new Error('thrown before any command');
      });

    it('counts a timeout once: a late reply after it neither resets the count nor counts again', async () => {
      const g = await guarded();
      const replies = [later<string>(), later<string>()];
      const timedOut = await Promise.all(replies.map((d) => g.run(() => d.promise).catch((e: unknown) => e)));
      for (const err of timedOut) expect(err).toBeInstanceOf(RedisTimeoutError);
      expect(g.breaker.state).toBe('closed');
      // The replies come after all, one a value and one an error.
      replies[0]?.resolve('late');
      replies[1]?.reject(new Error('late error'));
      await new Promise((r) => setImmediate(r));
      expect(g.breaker.state).toBe('closed');
      // Two failures counted, neither reset nor doubled: the third opens the breaker.
      await expect(thrown(g)).rejects.toThrow('thrown before any command');
      expect(g.breaker.state).toBe('open');
    });

    it('settles every caller even when a breaker listener throws', async () => {
      const g = await guarded({
        onStateChange: (state) => {
          if (state === 'open') throw new Error('listener failed');
        },
      });
      const never = [later<string>(), later<string>(), later<string>()];
      const results = await Promise.all(never.map((d) => g.run(() => d.promise).catch((e: unknown) => e)));
      for (const err of results) expect(err).toBeInstanceOf(RedisTimeoutError);
      expect(g.breaker.state).toBe('open');
    });
  });

  describe('live output', () => {
    it('a reader on one instance gets another instance’s output for sessions on every node: the stream on join, then each message', async () => {
      if (!cluster) throw new Error('the cluster did not start');
      const keyPrefix = uniqueKeyPrefix();
      const [ga, gb] = [0, 1].map(() => new GuardedRedis({ url: (cluster as OwnRedisCluster).url, cluster: true, keyPrefix })) as [GuardedRedis, GuardedRedis];
      const [a, b] = [new RedisOutputLog(ga), new RedisOutputLog(gb)];
      try {
        await Promise.all([ga.ready(), gb.ready(), a.ready(), b.ready()]);
        const wait = { timeoutMs: 15_000 };
        const event = (seq: number) => ({ seq, runId: 'r1', type: 'text', data: { seq }, createdAt: new Date().toISOString() });
        // Twelve sessions: their streams land on all three masters.
        const sessions = Array.from({ length: 12 }, () => sessionKey('t1', `s-${randomUUID()}`));
        await Promise.all(sessions.map((s) => a.publish(s, [event(1)])));
        // Joining reads the stream (on the session's node) once subscribed.
        for (const s of sessions) expect(await b.read(s, 0, wait)).toEqual([expect.objectContaining({ seq: 1, data: { seq: 1 } })]);
        // Subscribed: each next event comes as a message (an empty answer would be the timeout).
        const next = sessions.map((s) => b.read(s, 1, wait));
        await Promise.all(sessions.map((s) => a.publish(s, [event(2)])));
        for (const got of await Promise.all(next)) expect(got.map((e) => e.seq)).toEqual([2]);
      } finally {
        await Promise.all([a.close(), b.close()]);
        await Promise.all([ga.close(), gb.close()]);
      }
    });
  });
});
