/**
 * The cache coherence policy (src/core/cache-coherence.ts), rule by rule, over fakes of its
 * ports: no service, no real time. Each example names the rule of docs/distributed.md it shows.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { TOMBSTONE_VERSION } from '../../src/core/cache-tiers.js';
import { flush, ScriptedBus, snapshot } from './cache-coherence/fakes.js';
import { World } from './cache-coherence/world.js';

let world: World;

async function start(options: ConstructorParameters<typeof World>[0] = {}): Promise<World> {
  world = new World(options);
  await world.start();
  return world;
}

afterEach(async () => {
  await world?.stop();
});

/** Whether `promise` has settled after everything that can run without the clock has run. */
async function settled(promise: Promise<unknown>): Promise<boolean> {
  let done = false;
  void promise.then(
    () => (done = true),
    () => (done = true),
  );
  await flush();
  return done;
}

describe('near cache and the invalidation bus', () => {
  it('consults and fills the near cache only while the bus is live, and clears it when the bus comes back', async () => {
    const w = await start();
    await w.write(0, 'd/s');
    expect((await w.read(1, 'd/s')).fromCache).toBe(true);
    await w.read(1, 'd/s');
    const near = () => w.at(1).near?.stats();
    expect(near()?.hits).toBe(1);
    w.at(1).inbox.disconnectBus();
    await w.read(1, 'd/s');
    expect(near()?.hits).toBe(1);
    expect(w.at(1).client?.stats().hits).toBe(2);
    w.at(1).inbox.reconnectBus();
    expect(near()?.size).toBe(0);
  });

  it('drops an older near entry when a message for a newer version is applied', async () => {
    const w = await start();
    await w.write(0, 'd/s');
    await w.read(1, 'd/s');
    await w.write(0, 'd/s');
    await w.pollAll();
    expect(w.at(1).near?.peek('d/s')).toBe(false);
    expect((await w.read(1, 'd/s')).session?.version).toBe(2);
  });

  it('tells the shared tier to forget what it kept of a session when its message arrives, and everything when the bus comes back', async () => {
    const w = await start();
    await w.write(0, 'd/s');
    await w.read(1, 'd/s');
    const forgotten = () => w.at(1).client?.forgotten ?? [];
    const before = forgotten().length;
    await w.write(0, 'd/s');
    await w.pollAll();
    expect(forgotten().slice(before)).toContain('d/s');
    w.at(1).inbox.disconnectBus();
    w.at(1).inbox.reconnectBus();
    expect(forgotten().at(-1)).toBeUndefined();
    expect(forgotten().length).toBeGreaterThan(before + 1);
  });

  it('a near hit first applies the messages that have arrived (settle)', async () => {
    const w = await start();
    await w.write(0, 'd/s');
    await w.read(1, 'd/s');
    await w.pollAll();
    await w.write(0, 'd/s');
    // Instance 1's copy is waiting on its connection, not yet read by its event loop.
    expect(w.at(1).inbox.arrived.map((n) => n.version)).toEqual([2]);
    expect((await w.read(1, 'd/s')).session?.version).toBe(2);
  });

  it('a read by key (get) applies the arrived messages before a near hit too', async () => {
    const w = await start();
    await w.write(0, 'd/s');
    await w.read(1, 'd/s', 'key');
    await w.pollAll();
    await w.write(0, 'd/s');
    expect(w.at(1).inbox.arrived.map((n) => n.version)).toEqual([2]);
    expect((await w.read(1, 'd/s', 'key')).session?.version).toBe(2);
  });

  it('answers a near hit by tenant and id through the caller\'s answer, which settles the read', async () => {
    const w = await start();
    await w.write(0, 'd/s');
    await w.read(1, 'd/s');
    const answered: number[] = [];
    const read = w.run(1, () => w.at(1).cache.getFor('d', 's', (s) => (answered.push(s?.version ?? 0), 'answered')));
    await expect(read).resolves.toBe('answered');
    expect(answered).toEqual([1]);
    expect(w.at(1).near?.stats().hits).toBe(1);
  });

  it('does not ask the shared tier for what is not a session id: the answer gets null and refuses it', async () => {
    const w = await start();
    const client = w.at(1).client;
    const before = { ...client?.stats() };
    const seen: Array<string | null> = [];
    for (const bad of ['', '.hidden', 'a/b', 'x'.repeat(129), 'ünïcode']) {
      const answer = await w.run(1, () => w.at(1).cache.getFor('d', bad, (s) => s?.id ?? null));
      seen.push(answer);
    }
    expect(seen).toEqual([null, null, null, null, null]);
    expect(client?.stats()).toEqual(before);
    // A session id is asked for: a miss in the shared tier.
    await w.run(1, () => w.at(1).cache.getFor('d', 'absent', (s) => s));
    expect(client?.stats().misses).toBe((before.misses ?? 0) + 1);
  });

  it('without settle the same read would answer from memory with the older version', async () => {
    const w = await start();
    // The proof that the example above tests something: a bus that settles nothing.
    const lazy = w.at(1).bus as ScriptedBus & { settle(): Promise<void> };
    lazy.settle = () => Promise.resolve();
    await w.write(0, 'd/s');
    await w.read(1, 'd/s');
    await w.write(0, 'd/s');
    expect((await w.read(1, 'd/s')).session?.version).toBe(1);
  });

  it('a near hit whose bus went down while it settled is answered by the shared tier', async () => {
    const w = await start();
    await w.write(0, 'd/s');
    await w.read(1, 'd/s');
    const near = () => w.at(1).near?.stats();
    const hitsBefore = near()?.hits;
    const sharedBefore = w.at(1).client?.stats().hits ?? 0;
    // The connection drops during the wait: messages may be missed from here on.
    const bus = w.at(1).bus as ScriptedBus & { settle(): Promise<void> };
    bus.settle = () => {
      w.at(1).inbox.disconnectBus();
      return Promise.resolve();
    };
    expect((await w.read(1, 'd/s')).session?.version).toBe(1);
    expect(near()?.hits).toBe(hitsBefore);
    expect(w.at(1).client?.stats().hits).toBe(sharedBefore + 1);
  });

  it('refuses an older snapshot still in flight for at least 5 s after a message, and forgets it after two rotations', async () => {
    const w = await start({ shared: false });
    // A read on instance 1 fetched v1 from the truth; v2 is written before its refill lands.
    const inFlight = snapshot('d/s', 1);
    w.truth.set('d/s', inFlight);
    await w.write(0, 'd/s');
    await w.pollAll();
    await w.fill(1, inFlight, 'read');
    expect(w.at(1).near?.peek('d/s')).toBe(false);
    await w.clock.advance(4_999);
    await w.fill(1, inFlight, 'read');
    expect(w.at(1).near?.peek('d/s')).toBe(false);
    // Rotated into the older generation: still remembered.
    await w.clock.advance(1);
    await w.fill(1, inFlight, 'read');
    expect(w.at(1).near?.peek('d/s')).toBe(false);
    // The documented bound: a refill slower than the window is not refused.
    await w.clock.advance(5_000);
    await w.fill(1, inFlight, 'read');
    expect(w.at(1).near?.getSync('d/s')?.version).toBe(1);
  });

  it('remembers the invalidations it received across a bus reset, so a read in flight across it cannot bring an older version back', async () => {
    const w = await start({ shared: false });
    const inFlight = snapshot('d/s', 1);
    w.truth.set('d/s', inFlight);
    await w.write(0, 'd/s');
    await w.pollAll();
    w.at(1).inbox.disconnectBus();
    w.at(1).inbox.reconnectBus();
    await w.fill(1, inFlight, 'read');
    expect(w.at(1).near?.peek('d/s')).toBe(false);
  });

  it('a writer is acknowledged only after its own message came back', async () => {
    const w = await start();
    w.network.fate = (_note, to) => (to === 0 ? 'hold' : 'arrive');
    const s = w.commit('d/s');
    const acked = w.at(0).cache.set(s, 'write');
    expect(await settled(acked)).toBe(false);
    w.at(0).inbox.release(0);
    w.at(0).inbox.poll();
    expect(await settled(acked)).toBe(true);
    expect(w.at(0).near?.getSync('d/s')?.version).toBe(1);
  });

  it('or after 100 ms when its own message was lost', async () => {
    const w = await start();
    w.network.fate = (_note, to) => (to === 0 ? 'drop' : 'arrive');
    const acked = w.at(0).cache.set(w.commit('d/s'), 'write');
    await w.clock.advance(99);
    expect(await settled(acked)).toBe(false);
    await w.clock.advance(1);
    expect(await settled(acked)).toBe(true);
  });

  it('a dropped message leaves an older entry only until the near TTL, or until the bus is reset', async () => {
    const w = await start({ nearTtlMs: 10_000 });
    await w.write(0, 'd/s');
    await w.read(1, 'd/s');
    w.network.fate = (_note, to) => (to === 1 ? 'drop' : 'arrive');
    await w.write(0, 'd/s');
    expect((await w.read(1, 'd/s')).session?.version).toBe(1);
    await w.clock.advance(10_000);
    expect((await w.read(1, 'd/s')).session?.version).toBe(2);
    await w.write(0, 'd/s');
    expect((await w.read(1, 'd/s')).session?.version).toBe(2);
    w.at(1).inbox.disconnectBus();
    w.at(1).inbox.reconnectBus();
    expect((await w.read(1, 'd/s')).session?.version).toBe(3);
  });

  for (const shared of [true, false]) {
    const mode = shared ? 'shared tier' : 'PostgreSQL only';
    it(`a version a lock's lease read as committed drops an older near entry and refuses it, whatever the message does (${mode})`, async () => {
      const w = await start({ shared });
      await w.write(0, 'd/s');
      await w.read(1, 'd/s');
      w.network.fate = (_note, to) => (to === 1 ? 'hold' : 'arrive');
      await w.write(0, 'd/s');
      expect((await w.read(1, 'd/s')).session?.version).toBe(1);
      w.at(1).cache.noteCommitted('d/s', 2);
      expect(w.at(1).near?.peek('d/s')).toBe(false);
      // A snapshot of version 1 still on its way into the near cache is refused.
      await w.fill(1, snapshot('d/s', 1), 'read');
      expect(w.at(1).near?.peek('d/s')).toBe(false);
      expect((await w.read(1, 'd/s')).session?.version).toBe(2);
    });
  }

  it('until the message arrives, a shared snapshot older than the version a lease read is a miss', async () => {
    const w = await start();
    await w.write(0, 'd/s');
    await w.read(1, 'd/s');
    // Committed and acknowledged, but the shared tier still holds version 1 (a repair not yet
    // applied nor announced here).
    w.commit('d/s');
    w.at(1).cache.noteCommitted('d/s', 2);
    expect(await w.run(1, () => w.at(1).cache.get('d/s'))).toBeNull();
    expect((await w.read(1, 'd/s')).session?.version).toBe(2);
    expect((await w.read(1, 'd/s')).fromCache).toBe(true);
  });

  it('reads several at once: near hits after a settle, the rest from the shared tier in one call', async () => {
    const w = await start();
    for (const id of ['d/a', 'd/b', 'd/c']) await w.write(0, id);
    await w.read(1, 'd/a');
    await w.write(0, 'd/a');
    const found = await w.run(1, () => w.at(1).cache.getMany(['d/a', 'd/b', 'd/c', 'd/absent']));
    expect([...found].map(([id, s]) => `${id}${s.version}`)).toEqual(['d/a2', 'd/b1', 'd/c1']);
    expect(w.at(1).cache.fallbackStats()).toEqual({ redis_miss: 1, redis_unavailable: 0 });
  });
});

describe('PostgreSQL-only mode (no shared tier)', () => {
  it('publishes what the write statements did not announce, and waits for its own message', async () => {
    const w = await start({ shared: false });
    await w.write(0, 'd/s');
    await w.fill(0, snapshot('d/s', 1), 'read');
    await w.fill(0, w.commit('d/s'), 'unannounced-write');
    await w.run(0, () => w.at(0).cache.invalidate('d/s'));
    expect(w.at(0).bus.publishes).toEqual([
      { id: 'd/s', version: 1, announced: true },
      { id: 'd/s', version: 2, announced: false },
      { id: 'd/s', version: TOMBSTONE_VERSION, announced: false },
    ]);
    await w.pollAll();
    expect(w.at(1).near?.peek('d/s')).toBe(false);
    expect(w.at(0).cache.fallbackStats()).toEqual({});
  });
});

describe('the shared tier fails', () => {
  it('a failed write is recorded for repair before it is acknowledged, and applied at once while the breaker is closed', async () => {
    const w = await start();
    await w.write(0, 'd/s');
    await w.read(1, 'd/s');
    const client = w.at(0).client;
    if (!client) throw new Error('no shared tier');
    client.failNext = 1;
    await w.write(0, 'd/s');
    expect(w.table.recorded).toEqual([{ sessionId: 'd/s', version: 2 }]);
    // Drained before the acknowledgement: a marker of v2 keeps v1 out.
    expect(w.table.rows).toEqual([]);
    expect(w.server?.entries.get('d/s')).toEqual({ version: 2, session: null });
    expect(w.at(0).cache.repairsRecordedCount).toBe(1);
    expect((await w.read(1, 'd/s')).session?.version).toBe(2);
  });

  it('until a repair is applied, a shared snapshot older than it is a miss, and the near entry is dropped, wherever it was announced', async () => {
    const w = await start({ instances: 3 });
    await w.write(0, 'd/s');
    await w.read(1, 'd/s');
    await w.read(2, 'd/s');
    // Nobody may write to the shared tier (reads work): it keeps v1, and no invalidation goes out.
    for (const instance of w.instances) if (instance.client) instance.client.writesFail = true;
    await w.write(0, 'd/s');
    expect(w.table.rows.map((r) => r.version)).toEqual([2]);
    expect(w.server?.entries.get('d/s')?.version).toBe(1);
    await w.pollAll();
    expect(w.at(1).near?.peek('d/s')).toBe(false);
    expect(await w.run(2, () => w.at(2).cache.get('d/s'))).toBeNull();
    expect(w.at(2).client?.reads.at(-1)).toMatchObject({ id: 'd/s', version: 1 });
    expect((await w.read(1, 'd/s')).session?.version).toBe(2);
  });

  it('lately after a repair was announced, a shared hit first applies the notices already on the connection (an instance still cut off)', async () => {
    // No near cache: the shared hit is what is served.
    const w = await start({ instances: 2, near: false });
    await w.write(0, 'd/s');
    await w.write(0, 'd/t');
    // Instance 0 cannot write to the shared tier (still cut off); instance 1 reaches it.
    const cutOff = w.at(0).client;
    if (!cutOff) throw new Error('no shared client');
    cutOff.writesFail = true;
    // A first repair: instance 1 hears it (and drains it).
    await w.write(0, 'd/t');
    await w.pollAll();
    expect(w.table.rows).toEqual([]);
    // The next one's notice is on instance 1's connection, not read yet, when its read of the
    // shared tier (which still holds v1) comes back.
    await w.write(0, 'd/s');
    expect(w.at(1).inbox.arrived).toContainEqual({ kind: 'repair', id: 'd/s', version: 2 });
    expect(w.server?.entries.get('d/s')?.version).toBe(1);
    expect(await w.run(1, () => w.at(1).cache.get('d/s'))).toBeNull();
    expect(w.at(1).client?.reads.at(-1)).toMatchObject({ id: 'd/s', version: 1 });
    expect((await w.read(1, 'd/s')).session?.version).toBe(2);
    // Long after the last repair heard, a shared hit is served without reading the
    // connection first: a notice that arrived meanwhile is still there afterwards.
    await w.clock.advance(30_000);
    await w.pollAll();
    await w.write(0, 'd/u');
    expect(w.at(1).inbox.arrived).toContainEqual({ kind: 'repair', id: 'd/u', version: 1 });
    expect((await w.run(1, () => w.at(1).cache.get('d/s')))?.version).toBe(2);
    expect(w.at(1).inbox.arrived).toContainEqual({ kind: 'repair', id: 'd/u', version: 1 });
  });

  it('a repair the log refuses is retried (50, 250 ms), then kept and the breaker opened; recovery records it before it closes', async () => {
    const w = await start();
    await w.write(0, 'd/s');
    const writer = w.at(0);
    if (!writer.client) throw new Error('no shared tier');
    writer.client.failNext = 1;
    w.table.down = true;
    const before = w.clock.now();
    await w.write(0, 'd/s');
    expect(w.clock.now() - before).toBeGreaterThanOrEqual(300);
    expect(writer.breakerState).toBe('open');
    expect(writer.errors.map((e) => e.what)).toContain('cache repair record');
    // The sweep tries to recover; with the log still down the breaker stays open.
    await w.clock.advance(5_000);
    expect(writer.breakerState).toBe('open');
    expect(w.table.recorded).toEqual([]);
    w.table.down = false;
    await w.clock.advance(5_000);
    expect(writer.breakerState).toBe('closed');
    expect(w.table.recorded).toEqual([{ sessionId: 'd/s', version: 2 }]);
    expect(w.server?.entries.get('d/s')).toEqual({ version: 2, session: null });
  });

  it('recovery waits for a write still recording its repair, and drains it before closing', async () => {
    const w = await start();
    await w.write(0, 'd/s');
    let open = () => undefined as void;
    w.table.gate = new Promise<void>((resolve) => (open = resolve));
    w.disconnect(0);
    const acked = w.at(0).cache.set(w.commit('d/s'), 'write');
    await flush();
    const recovered = w.reconnect(0);
    await flush();
    expect(w.at(0).breakerState).toBe('draining');
    expect(await settled(acked)).toBe(false);
    open();
    w.table.gate = null;
    await recovered;
    await acked;
    expect(w.at(0).breakerState).toBe('closed');
    expect(w.table.rows).toEqual([]);
    expect(w.server?.held('d/s')).toBe(2);
  });

  it('a repair announced while recovery drains is drained too before the breaker closes', async () => {
    const w = await start();
    await w.write(0, 'd/a');
    await w.write(0, 'd/b');
    w.disconnect(0);
    w.table.insert('d/a', 2);
    const client = w.at(0).client;
    if (!client) throw new Error('no shared tier');
    const mark = client.markUnguarded.bind(client);
    let first = true;
    client.markUnguarded = async (id, version) => {
      if (first) {
        first = false;
        // Another instance, still cut off, records a repair meanwhile; its notice is read
        // while this drain waits for its I/O.
        w.table.insert('d/b', 2);
        w.at(0).inbox.poll();
      }
      return mark(id, version);
    };
    await w.reconnect(0);
    expect(w.at(0).breakerState).toBe('closed');
    expect(w.table.rows).toEqual([]);
    expect(w.server?.held('d/b')).toBe(2);
  });

  it('the sweep drains repairs nobody announced while the breaker is closed', async () => {
    const w = await start();
    await w.write(0, 'd/s');
    w.network.fate = (note) => (note.kind === 'repair' ? 'drop' : 'arrive');
    w.table.insert('d/s', 2);
    await w.clock.advance(4_999);
    expect(w.table.rows).toHaveLength(1);
    await w.clock.advance(1);
    expect(w.table.rows).toEqual([]);
    expect(w.server?.held('d/s')).toBe(2);
  });

  it('a create (rule 6) publishes nothing and answers before the store; the writer’s near cache takes it once the shared tier holds it', async () => {
    const w = await start();
    const s = w.commit('d/s');
    const answered = w.at(0).cache.set(s, 'created');
    expect(await settled(answered)).toBe(true);
    await w.pollAll();
    expect(w.at(1).inbox.arrived).toEqual([]);
    expect(w.server?.held('d/s')).toBe(1);
    expect(await w.read(0, 'd/s')).toEqual({ session: s, fromCache: true });
  });

  it('a reused id: a create refused by the delete marker fills no near entry, so a later write refused by it too cannot leave one stale (rule 6)', async () => {
    const w = await start();
    // Written and deleted on instance 1; instance 0 never held it.
    await w.write(1, 'd/s');
    w.truth.delete('d/s');
    await w.run(1, () => w.at(1).cache.invalidate('d/s'));
    await w.pollAll();
    // Past the window that refuses the deleted versions (a generation turns over at most once
    // per look, so look a few times); the marker itself lives on.
    w.commit('d/other');
    for (let i = 0; i < 3; i++) {
      await w.clock.advance(6_000);
      await w.read(0, 'd/other');
    }
    expect(w.server?.held('d/s')).toBe(TOMBSTONE_VERSION);
    // Created again on instance 0 under the same id (its versions start over); its store fails.
    const again = snapshot('d/s', 1);
    w.truth.set('d/s', again);
    const client = w.at(0).client;
    if (!client) throw new Error('no shared tier');
    client.writesFail = true;
    await w.run(0, () => w.at(0).cache.set(again, 'created'));
    client.writesFail = false;
    // Written on instance 1: the marker refuses it as well, so no message goes out.
    const updated = await w.write(1, 'd/s');
    await w.pollAll();
    const read = await w.read(0, 'd/s');
    expect(read.session?.version).toBe(updated.version);
    expect(read.fromCache).toBe(false);
  });

  it('a failed delete is repaired with a tombstone', async () => {
    const w = await start();
    await w.write(0, 'd/s');
    const client = w.at(0).client;
    if (!client) throw new Error('no shared tier');
    client.failNext = 1;
    await w.run(0, () => w.at(0).cache.invalidate('d/s'));
    expect(w.table.recorded).toEqual([{ sessionId: 'd/s', version: TOMBSTONE_VERSION }]);
    expect(w.server?.held('d/s')).toBe(TOMBSTONE_VERSION);
  });

  it('a per-instance breaker: three failed calls open it, calls then fail fast, and the cooldown lets one recover', async () => {
    const w = await start();
    await w.write(0, 'd/s');
    const reader = w.at(1);
    if (!reader.client) throw new Error('no shared tier');
    reader.client.failNext = 3;
    for (let i = 0; i < 3; i++) expect((await w.run(1, () => reader.cache.get('d/s')))).toBeNull();
    expect(reader.breakerState).toBe('open');
    expect(w.at(0).breakerState).toBe('closed');
    expect(await w.run(1, () => reader.cache.get('d/s'))).toBeNull();
    expect(reader.cache.fallbackStats()).toEqual({ redis_miss: 0, redis_unavailable: 4 });
    expect(reader.client.breaker.shortCircuited).toBe(1);
    await w.clock.advance(500);
    expect(await w.run(1, () => reader.cache.get('d/s'))).toBeNull();
    await flush();
    expect(reader.breakerState).toBe('closed');
    expect((await w.run(1, () => reader.cache.get('d/s')))?.version).toBe(1);
  });
});

describe('the shared server changes', () => {
  it('a server with another identity is cleared before use, once: the next instance trusts it', async () => {
    const w = await start();
    await w.write(0, 'd/s');
    w.server?.save();
    await w.write(0, 'd/s');
    // Restarted from an older snapshot: it holds v1, though v2 was acknowledged.
    w.server?.restart(true);
    w.disconnect(0);
    w.disconnect(1);
    expect(w.server?.held('d/s')).toBe(1);
    await w.reconnect(0);
    expect(w.server?.entries.size).toBe(0);
    await w.write(0, 'd/t');
    await w.reconnect(1);
    expect(w.server?.held('d/t')).toBe(1);
    expect((await w.read(1, 'd/s')).session?.version).toBe(2);
  });

  it('the documented bound of the version check: a refill read before a restart and stored after the clear stays until the next write', async () => {
    const w = await start();
    await w.write(0, 'd/s');
    const inFlight = w.truth.get('d/s');
    if (!inFlight) throw new Error('no truth');
    await w.write(0, 'd/s');
    w.server?.restart(false);
    w.disconnect(0);
    w.disconnect(1);
    await w.reconnect(0);
    await w.fill(0, inFlight, 'read');
    expect(w.server?.held('d/s')).toBe(1);
    // The instance that received v2's message keeps the refill out of its near cache.
    expect(w.at(0).near?.peek('d/s')).toBe(false);
    await w.reconnect(1);
    expect((await w.read(1, 'd/s')).session?.version).toBe(1);
    await w.write(0, 'd/s');
    expect((await w.read(1, 'd/s')).session?.version).toBe(3);
  });
});

describe('statistics', () => {
  it('by tier, with a miss in the near cache that the shared tier answers counted as a hit overall', async () => {
    const w = await start();
    await w.write(0, 'd/s');
    await w.read(1, 'd/s');
    await w.read(1, 'd/s');
    await w.read(1, 'd/absent');
    const c = w.at(1).cache;
    expect(c.statsByTier()).toEqual({ near: { hits: 1, misses: 2, size: 1 }, redis: { hits: 1, misses: 1, size: 0 } });
    expect(c.stats()).toEqual({ hits: 2, misses: 1, size: 1 });
  });
});
