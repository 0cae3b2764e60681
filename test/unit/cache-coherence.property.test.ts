/**
 * Properties of the cache coherence policy over generated histories: two or three instances
 * over one fake shared tier and one fake source of truth, with writes, reads, refills still
 * in flight, messages that arrive, wait, overtake each other or are lost, bus resets,
 * evictions, time, and outages of the shared tier and of the repair log. Each read is checked
 * against what the instance was entitled to know when it started (docs/distributed.md).
 */
import { keyOf } from '../../src/core/ids.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Session } from '../../src/core/types.js';
import type { Fate } from './cache-coherence/fakes.js';
import { World } from './cache-coherence/world.js';

// Cache names (`sessionKey`: tenant/id) of the sessions the scenarios write.
const IDS = ['d/x', 'd/y'] as const;
type Id = (typeof IDS)[number];
/** A refill never takes longer than this (shorter than the 5 s the policy remembers a message). */
const REFILL_MAX_MS = 4_000;
const NEAR_TTL_MS = 20_000;

type Command =
  | { t: 'write'; i: number; id: Id; fates: Fate[] }
  | { t: 'read'; i: number; id: Id }
  | { t: 'readMany'; i: number }
  | { t: 'startRead'; i: number; id: Id }
  | { t: 'finishRead'; k: number }
  | { t: 'release'; i: number; k: number }
  | { t: 'dropHeld'; i: number; k: number }
  | { t: 'poll'; i: number }
  | { t: 'advance'; ms: number }
  | { t: 'reset'; i: number }
  | { t: 'evictShared'; id: Id }
  | { t: 'disconnect'; i: number }
  | { t: 'reconnect'; i: number }
  | { t: 'flaky'; i: number; n: number }
  | { t: 'writesFail'; i: number; on: boolean }
  | { t: 'logDown' }
  | { t: 'logUp' }
  | { t: 'save' }
  | { t: 'restart'; fromSave: boolean };

const inst = fc.nat(2);
const id = fc.constantFrom(...IDS);
const k = fc.nat(5);

function commands(kinds: { fates: Fate[]; extra?: fc.Arbitrary<Command>[] }): fc.Arbitrary<Command[]> {
  const fate = fc.constantFrom(...kinds.fates);
  const base: fc.Arbitrary<Command>[] = [
    fc.record({ t: fc.constant('write' as const), i: inst, id, fates: fc.array(fate, { minLength: 3, maxLength: 3 }) }),
    fc.record({ t: fc.constant('read' as const), i: inst, id }),
    fc.record({ t: fc.constant('readMany' as const), i: inst }),
    fc.record({ t: fc.constant('startRead' as const), i: inst, id }),
    fc.record({ t: fc.constant('finishRead' as const), k }),
    fc.record({ t: fc.constant('release' as const), i: inst, k }),
    fc.record({ t: fc.constant('poll' as const), i: inst }),
    fc.record({ t: fc.constant('advance' as const), ms: fc.integer({ min: 1, max: 3_000 }) }),
  ];
  return fc.array(fc.oneof(...base, ...(kinds.extra ?? [])), { minLength: 10, maxLength: 60, size: 'max' });
}

/** What the generated histories got up to, so that a property cannot pass because nothing happened. */
class Coverage {
  /** Reads answered from a cache with something due (a floor above 0). */
  checkedReads = 0;
  /** Messages that arrived late, possibly overtaking others. */
  released = 0;
  /** Refills that landed with a version older than the truth's. */
  staleRefills = 0;
  lost = 0;
  resets = 0;
  repairs = 0;
  /** Writes acknowledged with a repair the log refused (kept by the instance). */
  unrecorded = 0;
  /** Restarts from a saved copy that held an older version than acknowledged. */
  olderServers = 0;
}

interface Refill {
  i: number;
  snapshot: Session;
  startedAt: number;
}

/**
 * Runs a history and checks every read: never older than what the instance was entitled to
 * know when the read started. `floors` says what that is for the property at hand.
 */
class History {
  readonly w: World;
  readonly refills: Refill[] = [];
  /** Per instance and session: the newest version whose message the instance applied. */
  readonly applied: Array<Map<string, number>>;
  /** Per instance and session: the newest version its own acknowledged writes stored. */
  readonly own: Array<Map<string, number>>;
  /** Per instance and session: the newest version acknowledged before its bus was reset. */
  readonly reset: Array<Map<string, number>>;
  readonly acks: Array<{ i: number; id: string; version: number; at: number; stored: boolean }> = [];
  readonly log: string[] = [];

  constructor(
    world: World,
    private readonly options: { autoPoll?: boolean; ttlBound?: boolean; outages?: boolean } = {},
    private readonly coverage = new Coverage(),
  ) {
    this.w = world;
    const maps = () => world.instances.map(() => new Map<string, number>());
    this.applied = maps();
    this.own = maps();
    this.reset = maps();
    world.instances.forEach((instance, i) => {
      instance.inbox.onApply = (note) => raise(this.applied[i], note.id, note.version);
    });
  }

  private index(i: number): number {
    return i % this.w.instances.length;
  }

  /**
   * The oldest version a read on instance i may return for `id` now: what reached the
   * instance (applied, or waiting on its connection to be read), what it wrote itself, what
   * was acknowledged before its bus was reset, and what the property adds.
   */
  floor(i: number, id: string): number {
    const waiting = this.w.at(i).inbox.arrived.filter((n) => n.id === id).map((n) => n.version);
    let floor = Math.max(this.applied[i]?.get(id) ?? 0, ...waiting, this.own[i]?.get(id) ?? 0, this.reset[i]?.get(id) ?? 0);
    if (this.options.ttlBound) {
      for (const a of this.acks) {
        if (a.id === id && a.at + NEAR_TTL_MS + REFILL_MAX_MS <= this.w.clock.now()) floor = Math.max(floor, a.version);
      }
    }
    if (this.options.outages) {
      // Announced: stored in the shared tier (its message went out), or recorded for repair
      // (its notice went out). A repair nobody could record yet is not announced.
      for (const a of this.acks) {
        const recorded = this.w.table.recorded.some((r) => r.sessionId === id && r.version >= a.version);
        if (a.id === id && (a.stored || recorded)) floor = Math.max(floor, a.version);
      }
    }
    return floor;
  }

  checkRead(i: number, id: string, version: number | null, floor: number): void {
    if (version !== null && version < floor) {
      throw new Error(`instance ${i} read ${id} v${version} after v${floor} was due\n${this.log.join('\n')}`);
    }
    if (version !== null && floor > 0) this.coverage.checkedReads++;
  }

  async apply(c: Command): Promise<void> {
    const w = this.w;
    this.log.push(JSON.stringify(c));
    switch (c.t) {
      case 'write': {
        const i = this.index(c.i);
        const fates = c.fates.slice(0, w.instances.length);
        this.coverage.lost += fates.filter((f) => f === 'drop').length;
        w.network.fate = (note, to) => (note.kind === 'bus' ? (c.fates[to] ?? 'arrive') : 'arrive');
        const repairs = w.table.recorded.length;
        try {
          const s = await w.write(i, c.id);
          const stored = (w.server?.held(c.id) ?? s.version) >= s.version;
          this.acks.push({ i, id: c.id, version: s.version, at: w.clock.now(), stored });
          if (w.server && stored) raise(this.own[i], c.id, s.version);
          this.checkRecorded(i, s, stored);
          this.coverage.repairs += w.table.recorded.length - repairs;
        } finally {
          w.network.fate = () => 'arrive';
        }
        break;
      }
      case 'read': {
        const i = this.index(c.i);
        const floor = this.floor(i, c.id);
        const { session, fromCache } = await w.read(i, c.id);
        this.checkRead(i, c.id, fromCache ? (session?.version ?? null) : null, floor);
        break;
      }
      case 'readMany': {
        const i = this.index(c.i);
        const floors = IDS.map((id) => this.floor(i, id));
        const found = await w.run(i, () => w.at(i).cache.getMany(IDS));
        IDS.forEach((id, n) => this.checkRead(i, id, found.get(id)?.version ?? null, floors[n] ?? 0));
        break;
      }
      case 'startRead': {
        const truth = w.truth.get(c.id);
        if (truth) this.refills.push({ i: this.index(c.i), snapshot: truth, startedAt: w.clock.now() });
        break;
      }
      case 'finishRead': {
        const [r] = this.refills.splice(c.k % Math.max(1, this.refills.length), 1);
        if (r) await this.land(r);
        break;
      }
      case 'release': {
        const inbox = w.at(this.index(c.i)).inbox;
        if (inbox.held.length > 0) {
          inbox.release(c.k % inbox.held.length);
          this.coverage.released++;
        }
        break;
      }
      case 'dropHeld': {
        const inbox = w.at(this.index(c.i)).inbox;
        if (inbox.held.length > 0) {
          inbox.dropHeld(c.k % inbox.held.length);
          this.coverage.lost++;
        }
        break;
      }
      case 'poll':
        w.at(this.index(c.i)).inbox.poll();
        break;
      case 'advance': {
        // Refills land before they get older than the policy's memory of messages.
        const due = this.refills.filter((r) => r.startedAt + REFILL_MAX_MS <= w.clock.now() + c.ms);
        for (const r of due) {
          this.refills.splice(this.refills.indexOf(r), 1);
          await this.land(r);
        }
        await w.clock.advance(c.ms);
        break;
      }
      case 'reset': {
        const i = this.index(c.i);
        const inbox = w.at(i).inbox;
        inbox.disconnectBus();
        inbox.reconnectBus();
        this.coverage.resets++;
        for (const id of IDS) {
          // A refill that started before the reset may still bring an older version back.
          if (this.refills.some((r) => r.i === i && keyOf(r.snapshot) === id)) continue;
          raise(this.reset[i], id, w.truth.get(id)?.version ?? 0);
        }
        break;
      }
      case 'evictShared':
        // An eviction racing a refill can leave an older version (the documented bound of
        // the version check); generated only when no refill of that session is in flight.
        if (!this.refills.some((r) => keyOf(r.snapshot) === c.id)) w.server?.evict(c.id);
        break;
      case 'disconnect':
        w.disconnect(this.index(c.i));
        break;
      case 'reconnect':
        await w.reconnect(this.index(c.i));
        break;
      case 'flaky': {
        const client = w.at(this.index(c.i)).client;
        if (client) client.failNext = c.n;
        break;
      }
      case 'writesFail': {
        const client = w.at(this.index(c.i)).client;
        if (client) client.writesFail = c.on;
        break;
      }
      case 'logDown':
        w.table.down = true;
        break;
      case 'logUp':
        w.table.down = false;
        break;
      case 'save':
        w.server?.save();
        break;
      case 'restart':
        // A refill read before the restart and stored after the recovery would find the key
        // cleared: the documented bound of the version check, as for evictions. They land first.
        for (const r of this.refills.splice(0)) await this.land(r);
        w.server?.restart(c.fromSave);
        if (IDS.some((id) => (w.server?.held(id) ?? 0) > 0 && (w.server?.held(id) ?? 0) < (w.truth.get(id)?.version ?? 0))) {
          this.coverage.olderServers++;
        }
        // Every connection to it broke.
        for (const instance of w.instances) w.disconnect(instance.index);
        break;
    }
    if (this.options.autoPoll) await w.pollAll();
    this.checkBreakers();
  }

  /** Writes the shared tier missed whose repair no log holds: id → version, per instance. */
  private readonly unrecorded: Array<{ i: number; id: string; version: number }> = [];

  /**
   * A write is acknowledged only once the shared tier holds it, or its repair is recorded,
   * or (the log refusing too) this instance stopped trusting the shared tier.
   */
  private checkRecorded(i: number, s: Session, stored: boolean): void {
    if (stored) return;
    if (this.w.table.recorded.some((r) => r.sessionId === keyOf(s) && r.version >= s.version)) return;
    if (this.w.at(i).breakerState === 'closed') {
      throw new Error(`instance ${i} acknowledged ${keyOf(s)} v${s.version} unrepaired with its breaker closed\n${this.log.join('\n')}`);
    }
    this.unrecorded.push({ i, id: keyOf(s), version: s.version });
    this.coverage.unrecorded++;
  }

  private async land(r: Refill): Promise<void> {
    if (r.snapshot.version < (this.w.truth.get(keyOf(r.snapshot))?.version ?? 0)) this.coverage.staleRefills++;
    await this.w.fill(r.i, r.snapshot, 'read');
  }

  /** An instance keeping a repair it could not record never closes its breaker before recording it. */
  private checkBreakers(): void {
    for (let n = this.unrecorded.length - 1; n >= 0; n--) {
      const u = this.unrecorded[n];
      if (!u) continue;
      if (this.w.table.recorded.some((r) => r.sessionId === u.id && r.version >= u.version)) {
        this.unrecorded.splice(n, 1);
      } else if (this.w.at(u.i).breakerState === 'closed') {
        throw new Error(`instance ${u.i} closed its breaker with ${u.id} v${u.version} unrecorded\n${this.log.join('\n')}`);
      }
    }
    for (const instance of this.w.instances) {
      const stray = instance.client?.reads.find((r) => r.state !== 'closed');
      if (stray) throw new Error(`instance ${instance.index} read the shared tier with its breaker ${stray.state}`);
    }
  }

  /** Every message delivered, every refill landed: each instance reads the newest version. */
  async converge(): Promise<void> {
    const w = this.w;
    for (const r of this.refills.splice(0)) await this.land(r);
    for (const instance of w.instances) {
      while (instance.inbox.held.length > 0) instance.inbox.release(0);
    }
    await w.pollAll();
    for (const instance of w.instances) {
      for (const id of IDS) {
        const truth = w.truth.get(id);
        if (!truth) continue;
        this.checkRead(instance.index, id, (await w.read(instance.index, id)).session?.version ?? null, truth.version);
      }
    }
  }
}

function raise(map: Map<string, number> | undefined, id: string, version: number): void {
  if (map && (map.get(id) ?? 0) < version) map.set(id, version);
}

async function play(
  world: World,
  history: Command[],
  options: ConstructorParameters<typeof History>[1],
  coverage: Coverage,
  converge: boolean,
): Promise<void> {
  await world.start();
  try {
    const h = new History(world, options, coverage);
    for (const c of history) await h.apply(c);
    if (converge) await h.converge();
  } finally {
    await world.stop();
  }
}

const modes = [
  { name: 'PostgreSQL + Redis', shared: true },
  { name: 'PostgreSQL only', shared: false },
] as const;

describe('cache coherence properties', () => {
  for (const mode of modes) {
    describe(mode.name, () => {
      it('a read never returns a version older than one whose invalidation reached the instance before the read (delayed, reordered)', async () => {
        const coverage = new Coverage();
        await fc.assert(
          fc.asyncProperty(fc.integer({ min: 2, max: 3 }), commands({ fates: ['arrive', 'hold'] }), async (n, history) => {
            await play(new World({ instances: n, shared: mode.shared, nearTtlMs: NEAR_TTL_MS }), history, {}, coverage, true);
          }),
          { numRuns: 300 },
        );
        for (const seen of [coverage.checkedReads, coverage.released, coverage.staleRefills]) expect(seen).toBeGreaterThan(0);
      });

      it('a lost message leaves an older version at most for the near TTL, or until the bus is reset', async () => {
        const extra: fc.Arbitrary<Command>[] = [
          fc.record({ t: fc.constant('dropHeld' as const), i: inst, k }),
          fc.record({ t: fc.constant('reset' as const), i: inst }),
          fc.record({ t: fc.constant('evictShared' as const), id }),
          fc.record({ t: fc.constant('advance' as const), ms: fc.integer({ min: 5_000, max: 25_000 }) }),
        ];
        const coverage = new Coverage();
        await fc.assert(
          fc.asyncProperty(fc.integer({ min: 2, max: 3 }), commands({ fates: ['arrive', 'hold', 'drop'], extra }), async (n, history) => {
            // One entry per instance: the LRU evicts too.
            const world = new World({ instances: n, shared: mode.shared, nearTtlMs: NEAR_TTL_MS, nearMaxEntries: 1 });
            await play(world, history, { ttlBound: true }, coverage, false);
          }),
          { numRuns: 300 },
        );
        for (const seen of [coverage.checkedReads, coverage.lost, coverage.resets, coverage.staleRefills]) expect(seen).toBeGreaterThan(0);
      });
    });
  }

  it('outages: writes are recorded for repair before they are acknowledged, a breaker keeping an unrecorded repair stays open, and no instance reads an older version from the shared tier after recovery', async () => {
    const extra: fc.Arbitrary<Command>[] = [
      fc.record({ t: fc.constant('disconnect' as const), i: inst }),
      fc.record({ t: fc.constant('reconnect' as const), i: inst }),
      fc.record({ t: fc.constant('flaky' as const), i: inst, n: fc.integer({ min: 1, max: 4 }) }),
      fc.record({ t: fc.constant('writesFail' as const), i: inst, on: fc.boolean() }),
      fc.constant({ t: 'logDown' as const }),
      fc.constant({ t: 'logUp' as const }),
      fc.constant({ t: 'save' as const }),
      fc.record({ t: fc.constant('restart' as const), fromSave: fc.boolean() }),
      fc.record({ t: fc.constant('advance' as const), ms: fc.integer({ min: 500, max: 6_000 }) }),
    ];
    const coverage = new Coverage();
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 2, max: 3 }), commands({ fates: ['arrive'], extra }), async (n, history) => {
        const world = new World({ instances: n, shared: true, nearTtlMs: NEAR_TTL_MS });
        await play(world, history, { autoPoll: true, outages: true }, coverage, false);
      }),
      { numRuns: 300 },
    );
    for (const seen of [coverage.checkedReads, coverage.repairs, coverage.unrecorded, coverage.olderServers]) expect(seen).toBeGreaterThan(0);
  });
});
