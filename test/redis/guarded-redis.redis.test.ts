/**
 * GuardedRedis's closed-breaker path, against the shared standalone Redis: with the breaker
 * closed a call skips `CircuitBreaker.run` and the reply deadline tells the breaker how it
 * ended. What this pins: timeouts count as failures, a late reply after a timeout (success or
 * error) neither counts again nor resets the count, a synchronous throw counts, a success
 * (a real GET) resets the count, the threshold opens the breaker, and a breaker listener that
 * throws leaves every caller's promise settled. A reply that must come at an exact moment
 * (after its deadline) is a promise the test settles, handed to `run` as the command's.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { GuardedRedis, RedisTimeoutError } from '../../src/adapters/redis/guarded-redis.js';
import { requireServices, serviceUrl, uniqueKeyPrefix } from '../setup/harness.js';

const suite = 'redis/guarded-redis';
const ready = requireServices(['redis'], suite);

describe.skipIf(!ready)(suite, () => {
  const opened: GuardedRedis[] = [];

  afterEach(async () => {
    await Promise.all(opened.splice(0).map((g) => g.close()));
  });

  async function guarded(options: { onStateChange?: (state: string) => void } = {}): Promise<GuardedRedis> {
    const g = new GuardedRedis({ url: serviceUrl('redis'), keyPrefix: uniqueKeyPrefix(), commandTimeoutMs: 200, failureThreshold: 3, cooldownMs: 60_000, ...options });
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
  const succeeds = (g: GuardedRedis) => g.run((r) => r.get(g.keys.global('nothing')));

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

  it('a synchronous throw counts, a success resets the count, the threshold opens', async () => {
    const g = await guarded();
    await expect(thrown(g)).rejects.toThrow();
    await expect(thrown(g)).rejects.toThrow();
    expect(await succeeds(g)).toBeNull();
    await expect(thrown(g)).rejects.toThrow();
    await expect(thrown(g)).rejects.toThrow();
    expect(g.breaker.state).toBe('closed');
    await expect(thrown(g)).rejects.toThrow();
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
