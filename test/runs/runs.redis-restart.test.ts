/**
 * Runs survive Redis going away (SPEC §15): on a throwaway redis-server of this test's own,
 * killed and restarted empty mid-run, a reader on another instance still gets every event
 * with no gap and no duplicate (the archive fills what the lost stream held), an interrupt
 * sent while Redis is down arrives through the heartbeat, and after the restart the live path
 * works again.
 */
import { createClient } from 'redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OutputEvent, RunContext } from '../../src/core/runs.js';
import { createSessions, type Sessions } from '../../src/internal.js';
import { freshDatabase, requireServices } from '../setup/harness.js';
import { OwnRedis, requireRedisBinaries, waitForRedis } from '../redis/redis-servers.js';
import { collect, waitFor, type FreshDatabase } from './support.js';

const ready = requireServices(['postgres'], 'runs/redis-restart') && requireRedisBinaries(['redis-server'], 'runs/redis-restart');

describe.skipIf(!ready)('runs/redis-restart', () => {
  let db: FreshDatabase;
  let redis: OwnRedis;
  let a: Sessions;
  let b: Sessions;

  beforeAll(async () => {
    db = await freshDatabase();
    redis = await OwnRedis.start();
    const env = { DATABASE_URL: db.url, REDIS_URL: redis.url, KEY_PREFIX: 'as_restart:', RUN_LEASE_MS: '900', RUN_SWEEP_INTERVAL_MS: '0' };
    a = await createSessions({ env: { ...env, INSTANCE_ID: 'restart-a' } });
    b = await createSessions({ env: { ...env, INSTANCE_ID: 'restart-b' } });
  });

  afterAll(async () => {
    await b?.close();
    await a?.close();
    await redis?.stop();
    await db?.drop();
  });

  it('a reader on another instance misses nothing when Redis dies and comes back empty mid-run', async () => {
    const session = await a.create();
    const run = await a.runs.start(session.id, async (r: RunContext) => {
      for (let i = 0; i < 120; i++) {
        await new Promise((res) => setTimeout(res, 10));
        await r.emit({ type: 'text', data: { i } });
      }
    });
    const events: OutputEvent[] = [];
    const reading = (async () => {
      for await (const e of b.runs.stream(session.id)) events.push(e);
    })();
    await waitFor(() => events.length >= 20, 10_000, '20 events');
    await redis.kill();
    await waitFor(() => events.length >= 50, 15_000, 'events while Redis is down');
    await redis.restart();
    await reading;
    expect(events).toHaveLength(122);
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => (events[0]?.seq ?? 0) + i));
    expect(events.filter((e) => e.type === 'text').map((e) => (e.data as { i: number }).i)).toEqual(Array.from({ length: 120 }, (_, i) => i));
    expect((await a.runs.wait(session.id, run.id)).status).toBe('completed');
  });

  it('an interrupt sent while Redis is down arrives by heartbeat; after Redis returns the fast path works again', async () => {
    const session = await a.create();
    const untilAborted = async (r: RunContext) => {
      await r.emit({ type: 'text', data: 'waiting' });
      await new Promise<void>((resolve) => (r.signal.aborted ? resolve() : r.signal.addEventListener('abort', () => resolve(), { once: true })));
    };
    const first = await a.runs.start(session.id, untilAborted);
    await waitFor(async () => (await a.runs.get(session.id, first.id)).status === 'running');
    await redis.kill();
    const sent = Date.now();
    await b.runs.interrupt(session.id);
    const ended = await a.runs.wait(session.id, first.id);
    expect(ended.status).toBe('interrupted');
    // One heartbeat (300 ms) when idle; printed, and bounded only generously (a loaded machine
    // can hold a heartbeat back). That the heartbeat did it is `via` below.
    const delay = Date.now() - sent;
    console.log(`[redis down] interrupt by heartbeat: ${delay} ms`);
    expect(delay).toBeLessThan(10_000);
    const terminal = (await collect(b.runs.stream(session.id, { after: (ended.endSeq ?? 1) - 1 })))[0];
    expect(terminal?.data).toMatchObject({ interrupt: { via: 'heartbeat' } });

    await redis.restart();
    // Wait until both instances trust Redis again and A's signal channel is subscribed anew
    // (node-redis resubscribes after its reconnect backoff; a fixed wait can be too short).
    await waitForRedis([a, b]);
    const raw = createClient({ url: redis.url });
    await raw.connect();
    try {
      await waitFor(async () => {
        const reply = (await raw.sendCommand(['PUBSUB', 'NUMSUB', 'as_restart:signals:restart-a'])) as [string, number];
        return Number(reply[1]) > 0;
      }, 20_000, "A's signal subscription after the restart");
    } finally {
      raw.destroy();
    }
    // A's heartbeat (every 300 ms) can read the flag in the moment before the signal lands;
    // the run then says via 'heartbeat'. The signal path works if it delivers in a few tries.
    let done: OutputEvent | undefined;
    for (let attempt = 0; attempt < 5; attempt++) {
      const next = await a.runs.start(session.id, untilAborted);
      const events = collect(b.runs.stream(session.id));
      await waitFor(async () => (await a.runs.get(session.id, next.id)).status === 'running');
      await b.runs.interrupt(session.id);
      done = (await events).at(-1);
      expect(done?.data).toMatchObject({ status: 'interrupted', run_id: next.id });
      if ((done?.data as { interrupt?: { via?: string } }).interrupt?.via === 'signal') break;
    }
    expect(done?.data).toMatchObject({ status: 'interrupted', interrupt: { via: 'signal' } });
  });
});
