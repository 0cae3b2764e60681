/**
 * GuardedRedis's closed-breaker path and its reply deadline. Against the shared standalone
 * Redis: a synchronous throw counts as a failure, a success (a real GET) resets the count,
 * the threshold opens the breaker. Against a Redis of the test's own, frozen with SIGSTOP (a
 * server that hangs rather than refusing connections): a call without a reply fails after
 * the deadline with RedisTimeoutError, and so does every other call in flight on that
 * connection; the breaker opens at once (not after the threshold), the connection is
 * replaced, and once the server answers again the breaker closes and calls get replies; a
 * breaker listener that throws leaves every caller's promise settled; and an event loop
 * that was busy for longer than the deadline while the reply waited in its socket is not
 * taken for a stall.
 */
import { spawnSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { GuardedRedis, RedisTimeoutError } from '../../src/adapters/redis/guarded-redis.js';
import { requireServices, serviceUrl, uniqueKeyPrefix } from '../setup/harness.js';
import { OwnRedis, redisBinary, requireRedisBinaries } from './redis-servers.js';

const suite = 'redis/guarded-redis';
const ready = requireServices(['redis'], suite);
const ownReady = requireRedisBinaries(['redis-server', 'redis-cli'], `${suite} (own server)`);

const TIMEOUT_MS = 200;

describe.skipIf(!ready)(suite, () => {
  const opened: GuardedRedis[] = [];
  const servers: OwnRedis[] = [];

  afterEach(async () => {
    await Promise.all(opened.splice(0).map((g) => g.close()));
    await Promise.all(servers.splice(0).map((s) => s.stop()));
  });

  async function guarded(options: { url?: string; cooldownMs?: number; onStateChange?: (state: string) => void } = {}): Promise<GuardedRedis> {
    const g = new GuardedRedis({
      url: serviceUrl('redis'),
      keyPrefix: uniqueKeyPrefix(),
      commandTimeoutMs: TIMEOUT_MS,
      failureThreshold: 3,
      cooldownMs: 60_000,
      ...options,
    });
    opened.push(g);
    await g.ready();
    expect(g.breaker.state).toBe('closed');
    return g;
  }

  async function ownServer(): Promise<OwnRedis> {
    const server = await OwnRedis.start();
    servers.push(server);
    return server;
  }

  /** A GuardedRedis on a server of the test's own, holding 'v1' at `key`. */
  async function onOwnServer(options: { cooldownMs?: number; onStateChange?: (state: string) => void } = {}) {
    const server = await ownServer();
    const g = await guarded({ url: server.url, ...options });
    const key = g.keys.global('k');
    await g.run((r) => r.set(key, 'v1'), 'write');
    return { server, g, key };
  }

  async function until(condition: () => boolean | Promise<boolean>, what: string, ms = 15_000): Promise<void> {
    for (const deadline = Date.now() + ms; !(await condition()); await sleep(20)) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    }
  }

  const thrown = (g: GuardedRedis) =>
    g.run(() => {
      throw new Error('thrown before any command');
    });
  const succeeds = (g: GuardedRedis) => g.run((r) => r.get(g.keys.global('nothing')));

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

  it.skipIf(!ownReady)('a frozen server: the calls in flight fail after the deadline, the breaker opens at once, and closes when it answers again', async () => {
    const { server, g, key } = await onOwnServer({ cooldownMs: 50 });

    server.pause();
    const began = performance.now();
    // One call first: a single timeout must open the breaker (the threshold is 3).
    const first = await g.run((r) => r.get(key)).catch((e: unknown) => e);
    const waited = performance.now() - began;
    expect(first).toBeInstanceOf(RedisTimeoutError);
    expect(waited).toBeGreaterThanOrEqual(TIMEOUT_MS - 5);
    expect(g.breaker.state).not.toBe('closed');
    // While it is open, calls fail fast instead of waiting for the deadline.
    await expect(g.run((r) => r.get(key))).rejects.toThrow();

    server.resume();
    await until(() => g.breaker.isClosed, 'the breaker to close after the server answers again');
    expect(await g.run((r) => r.get(key))).toBe('v1');
  });

  it.skipIf(!ownReady)('every call in flight on the stalled connection fails with the timeout, and the new connection serves the next ones', async () => {
    const { server, g, key } = await onOwnServer({ cooldownMs: 50 });

    server.pause();
    // Calls begun at different moments, the later ones well before the first one's deadline.
    const calls: Promise<unknown>[] = [];
    for (let i = 0; i < 4; i++) {
      calls.push(g.run((r) => r.get(key)).catch((e: unknown) => e));
      await sleep(TIMEOUT_MS / 8);
    }
    const results = await Promise.all(calls);
    for (const err of results) expect(err).toBeInstanceOf(RedisTimeoutError);

    server.resume();
    await until(() => g.breaker.isClosed, 'the breaker to close');
    const values = await Promise.all(Array.from({ length: 4 }, () => g.run((r) => r.get(key))));
    expect(values).toEqual(['v1', 'v1', 'v1', 'v1']);
  });

  it.skipIf(!ownReady)('settles every caller even when a breaker listener throws', async () => {
    const server = await ownServer();
    const g = await guarded({
      url: server.url,
      onStateChange: (state) => {
        if (state === 'open') throw new Error('listener failed');
      },
    });
    server.pause();
    const results = await Promise.all(Array.from({ length: 3 }, () => g.run((r) => r.get(g.keys.global('k'))).catch((e: unknown) => e)));
    for (const err of results) expect(err).toBeInstanceOf(RedisTimeoutError);
    expect(g.breaker.state).toBe('open');
  });

  it.skipIf(!ownReady)('a reply that waited in the socket while the event loop was busy past the deadline is a reply, not a stall', async () => {
    const states: string[] = [];
    const { server, g, key } = await onOwnServer({ onStateChange: (state) => states.push(state) });
    states.length = 0;

    server.pause();
    const call = g.run((r) => r.get(key));
    // The call is written and its deadline's clock runs (it is checked every tenth of it).
    await sleep(TIMEOUT_MS / 4);
    server.resume();
    // From the check phase, so that the next turn of the loop runs the expired timers before
    // it reads the sockets: the deadline's check sees the call late before the reply is read.
    await new Promise((resolve) => setImmediate(resolve));
    // The reply comes while this loop is busy for five times the deadline: a PING on another
    // connection, waited for synchronously, is answered after the server has read (and
    // answered) what waited on ours since before it stopped.
    const busyUntil = performance.now() + 5 * TIMEOUT_MS;
    const ping = spawnSync(redisBinary('redis-cli') as string, ['-p', String(server.port), 'PING'], { encoding: 'utf8', timeout: 30_000 });
    expect(ping.stdout.trim()).toBe('PONG');
    while (performance.now() < busyUntil) {
      // Busy: no timer, no socket read.
    }
    expect(await call).toBe('v1');
    expect(g.breaker.state).toBe('closed');
    expect(states).toEqual([]);
  });
});
