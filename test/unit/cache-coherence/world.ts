/**
 * Several instances of the coherence policy over one fake shared tier, one repair log and one
 * fake source of truth, in one process, driven step by step. An operation runs until it
 * settles; while it waits, only its own instance's event loop runs (its arrived messages are
 * applied) and the fake clock moves to the next timer, never further. Nothing else happens
 * unless the test says so.
 */
import { CoherentSessionCache } from '../../../src/core/cache-coherence.js';
import type { CacheOrigin } from '../../../src/core/ports.js';
import type { Session } from '../../../src/core/types.js';
import { LruSessionCache } from '../../../src/adapters/memory/lru-session-cache.js';
import { splitSessionKey } from '../../../src/core/ids.js';
import {
  FakeClock,
  FakeRepairLog,
  FakeRepairTable,
  FakeSharedClient,
  FakeSharedServer,
  flush,
  Inbox,
  Network,
  ScriptedBus,
  snapshot,
} from './fakes.js';

export interface WorldOptions {
  instances?: number;
  /** With a shared tier (PostgreSQL + Redis), or without (PostgreSQL only). Default true. */
  shared?: boolean;
  nearTtlMs?: number;
  nearMaxEntries?: number;
  /** false: no near cache (CACHE_MAX_ENTRIES=0). */
  near?: boolean;
}

export class Instance {
  readonly inbox = new Inbox();
  readonly bus: ScriptedBus;
  readonly near: LruSessionCache | null;
  readonly client: FakeSharedClient | null;
  readonly repairs: FakeRepairLog | null;
  readonly cache: CoherentSessionCache;
  readonly errors: Array<{ what: string; err: unknown }> = [];

  constructor(
    readonly index: number,
    world: World,
    options: Required<WorldOptions>,
  ) {
    world.network.inboxes.push(this.inbox);
    this.bus = new ScriptedBus(this.inbox, world.network, !options.shared);
    this.near = options.near
      ? new LruSessionCache({ maxEntries: options.nearMaxEntries, ttlMs: options.nearTtlMs, now: () => world.clock.now(), tier: 'near' })
      : null;
    this.client = world.server ? new FakeSharedClient(world.server, world.clock) : null;
    this.repairs = world.server ? new FakeRepairLog(world.table, this.inbox) : null;
    this.cache = new CoherentSessionCache({
      near: this.near,
      shared: this.client && this.repairs ? { cache: this.client, health: this.client, repairs: this.repairs } : null,
      bus: this.bus,
      clock: world.clock,
      onError: (err, what) => this.errors.push({ err, what }),
    });
  }

  get breakerState(): string {
    return this.client?.breaker.state ?? 'closed';
  }
}

export class World {
  readonly clock = new FakeClock();
  readonly network = new Network();
  readonly server: FakeSharedServer | null;
  readonly table: FakeRepairTable;
  readonly instances: Instance[] = [];
  /** The source of truth: the committed snapshot of each session. */
  readonly truth = new Map<string, Session>();
  readonly options: Required<WorldOptions>;

  constructor(options: WorldOptions = {}) {
    this.options = { instances: 2, shared: true, nearTtlMs: 60_000, nearMaxEntries: 1_000, near: true, ...options };
    this.server = this.options.shared ? new FakeSharedServer(this.network) : null;
    this.table = new FakeRepairTable(this.network);
    for (let i = 0; i < this.options.instances; i++) this.instances.push(new Instance(i, this, this.options));
  }

  async start(): Promise<void> {
    for (const inst of this.instances) {
      await inst.cache.ready();
      // As at a real start: the breaker opens and recovers (server check, drain) before use.
      if (inst.client) {
        inst.client.breaker.trip(new Error('starting'));
        await this.run(inst.index, () => inst.client?.breaker.recover() ?? Promise.resolve(true));
      }
    }
  }

  async stop(): Promise<void> {
    for (const inst of this.instances) await inst.cache.close();
  }

  at(i: number): Instance {
    const inst = this.instances[i];
    if (!inst) throw new Error(`no instance ${i}`);
    return inst;
  }

  /**
   * Runs `op` on instance `i` to its end. While it waits, instance i's event loop applies
   * what has arrived, and the clock moves to the next timer when nothing else can happen.
   */
  async run<T>(i: number, op: () => Promise<T>): Promise<T> {
    let outcome: { ok: true; value: T } | { ok: false; err: unknown } | null = null;
    op().then(
      (value) => (outcome = { ok: true, value }),
      (err: unknown) => (outcome = { ok: false, err }),
    );
    for (let steps = 0; ; steps++) {
      await flush();
      if (outcome) break;
      if (steps > 10_000) throw new Error('operation never finished');
      const inbox = this.at(i).inbox;
      if (inbox.arrived.length > 0) inbox.poll();
      else if (!(await this.clock.fireNext())) throw new Error('operation stuck: nothing can happen');
    }
    const done = outcome as { ok: true; value: T } | { ok: false; err: unknown };
    if (!done.ok) throw done.err;
    return done.value;
  }

  /** Commits a new version in the source of truth (announcing it, in PostgreSQL-only mode). */
  commit(id: string): Session {
    const next = snapshot(id, (this.truth.get(id)?.version ?? 0) + 1);
    this.truth.set(id, next);
    // PostgreSQL-only: the write statement notifies as it commits.
    if (!this.server) this.network.send({ kind: 'bus', id, version: next.version });
    return next;
  }

  /** A session write on instance i, as the SessionService makes it: commit, then cache. */
  async write(i: number, id: string): Promise<Session> {
    const s = this.commit(id);
    await this.run(i, () => this.at(i).cache.set(s, 'write'));
    return s;
  }

  /**
   * A read as the SessionService makes it: cache (by tenant and id, `getFor`, as the service
   * asks it; `by: 'key'` asks `get` of the key instead), else the truth and a refill.
   */
  async read(i: number, id: string, by: 'tenant-and-id' | 'key' = 'tenant-and-id'): Promise<{ session: Session | null; fromCache: boolean }> {
    const cache = this.at(i).cache;
    const name = splitSessionKey(id);
    const cached = await this.run(i, () => (by === 'key' || !name ? cache.get(id) : cache.getFor(name.tenant, name.id, (s) => s)));
    if (cached) return { session: cached, fromCache: true };
    const truth = this.truth.get(id) ?? null;
    if (truth) await this.fill(i, truth, 'read');
    return { session: truth, fromCache: false };
  }

  fill(i: number, s: Session, origin: CacheOrigin): Promise<void> {
    return this.run(i, () => this.at(i).cache.set(s, origin));
  }

  /** Every instance's event loop runs: what has arrived is applied. */
  async pollAll(): Promise<void> {
    for (const inst of this.instances) inst.inbox.poll();
    await flush();
  }

  /** The shared tier's connection of instance i fails (an error event): breaker open, bus down. */
  disconnect(i: number): void {
    const inst = this.at(i);
    if (!inst.client) return;
    inst.client.reachable = false;
    inst.client.breaker.trip(new Error('connection lost'));
    inst.inbox.disconnectBus();
  }

  /** It connects again (a ready event): the bus resubscribes, and the breaker recovers. */
  async reconnect(i: number): Promise<void> {
    const inst = this.at(i);
    if (!inst.client) return;
    inst.client.reachable = true;
    inst.inbox.reconnectBus();
    if (inst.client.breaker.isClosed) inst.client.breaker.trip(new Error('reconnected'));
    await this.run(i, () => inst.client?.breaker.recover() ?? Promise.resolve(true));
  }
}
