/**
 * Fakes of every port of the cache coherence policy, with nothing left to chance: a clock
 * the test advances, an invalidation network that holds, drops and reorders messages on
 * the test's say, a shared tier server with the rules of casSet-1.lua, and a repair log.
 * Each instance gets its own client of the shared server (behind its own real circuit
 * breaker), its own inbox and bus, and its own repair log client.
 */
import type { CacheRepair, CacheRepairLog, SharedCache, SharedCacheHealth } from '../../../src/core/cache-tiers.js';
import { TOMBSTONE_VERSION } from '../../../src/core/cache-tiers.js';
import type { Clock } from '../../../src/core/clock.js';
import type { InvalidationBus, InvalidationHandlers } from '../../../src/core/invalidation.js';
import type { CacheStats } from '../../../src/core/ports.js';
import type { Session } from '../../../src/core/types.js';
import { CircuitBreaker } from '../../../src/adapters/redis/circuit-breaker.js';
import { sessionSnapshot } from '../../setup/sessions.js';
import { keyOf, splitSessionKey } from '../../../src/core/ids.js';

/**
 * A snapshot at the epoch (the fake clock's time, not the machine's) of the session the cache
 * names `name` (`<tenant>/<id>`, what keyOf gives back).
 */
export function snapshot(name: string, version: number, extra: Partial<Session> = {}): Session {
  const parts = splitSessionKey(name);
  if (!parts) throw new Error(`a test session is named <tenant>/<id>, not ${name}`);
  return sessionSnapshot(parts.id, version, { tenantId: parts.tenant, ...extra }, new Date(0));
}

/** Lets every promise chain that waits on nothing but other promises run to its end. */
export function flush(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

interface Timer {
  at: number;
  seq: number;
  fn: () => void;
  every: number | null;
}

export class FakeClock implements Clock {
  private t = 1_000_000;
  private seq = 0;
  private readonly timers = new Set<Timer>();

  now(): number {
    return this.t;
  }

  after(ms: number, fn: () => void): () => void {
    return this.add(ms, fn, null);
  }

  every(ms: number, fn: () => void): () => void {
    return this.add(ms, fn, ms);
  }

  get pending(): number {
    return this.timers.size;
  }

  /** Fires the earliest timer (moving the time to it); false when there is none. */
  async fireNext(): Promise<boolean> {
    const next = this.earliest();
    if (!next) return false;
    this.t = Math.max(this.t, next.at);
    this.fire(next);
    await flush();
    return true;
  }

  /** Moves the time on by `ms`, firing every timer due on the way, in order. */
  async advance(ms: number): Promise<void> {
    // Timers that work already under way is about to set count from now, as they would.
    await flush();
    const end = this.t + ms;
    for (let next = this.earliest(); next && next.at <= end; next = this.earliest()) {
      this.t = Math.max(this.t, next.at);
      this.fire(next);
      await flush();
    }
    this.t = end;
    await flush();
  }

  private add(ms: number, fn: () => void, every: number | null): () => void {
    const timer: Timer = { at: this.t + ms, seq: this.seq++, fn, every };
    this.timers.add(timer);
    return () => this.timers.delete(timer);
  }

  private earliest(): Timer | undefined {
    let best: Timer | undefined;
    for (const t of this.timers) if (!best || t.at < best.at || (t.at === best.at && t.seq < best.seq)) best = t;
    return best;
  }

  private fire(timer: Timer): void {
    if (timer.every === null) this.timers.delete(timer);
    else timer.at += timer.every;
    timer.fn();
  }
}

/** An invalidation (from the shared tier or a bus publish) or an announced repair. */
export interface Note {
  kind: 'bus' | 'repair';
  id: string;
  version: number;
}

/** What happens to one copy of a message on its way to one instance. */
export type Fate = 'arrive' | 'hold' | 'drop';

/**
 * What has reached one instance. `held`: still on its way (delayed), released in any order
 * by the test; `arrived`: waiting on the instance's connection, applied when its event loop
 * next polls (a settle, or the loop running while an operation waits).
 */
export class Inbox {
  readonly held: Note[] = [];
  readonly arrived: Note[] = [];
  busConnected = true;
  busHandlers: InvalidationHandlers | null = null;
  repairListener: ((repair: CacheRepair | null) => void) | null = null;
  /** Called for every note as it is applied (the test's bookkeeping). */
  onApply: (note: Note) => void = () => undefined;

  receive(note: Note, fate: Fate): void {
    if (note.kind === 'bus' && !this.busConnected) return;
    if (fate === 'drop') return;
    if (fate === 'hold') this.held.push(note);
    else this.arrive(note);
  }

  /** A held note reaches the connection (any of them: messages may overtake each other). */
  release(index: number): void {
    const [note] = this.held.splice(index, 1);
    if (note) this.arrive(note);
  }

  dropHeld(index: number): void {
    this.held.splice(index, 1);
  }

  /** The event loop reads the connection: arrived notes are applied in order. */
  poll(): void {
    for (const note of this.arrived.splice(0)) {
      if (note.kind === 'bus') {
        if (!this.busConnected) continue;
        this.busHandlers?.onInvalidate(note.id, note.version);
      } else {
        this.repairListener?.({ sessionId: note.id, version: note.version });
      }
      this.onApply(note);
    }
  }

  /** The bus connection drops: what was on its way over it, or not yet read from it, is lost. */
  disconnectBus(): void {
    this.busConnected = false;
    const keep = (n: Note) => n.kind !== 'bus';
    this.held.splice(0, this.held.length, ...this.held.filter(keep));
    this.arrived.splice(0, this.arrived.length, ...this.arrived.filter(keep));
  }

  reconnectBus(): void {
    if (this.busConnected) return;
    this.busConnected = true;
    this.busHandlers?.onReset();
  }

  private arrive(note: Note): void {
    this.arrived.push(note);
  }
}

/** Carries each message to every instance; `fate` decides, per copy, what becomes of it. */
export class Network {
  readonly inboxes: Inbox[] = [];
  fate: (note: Note, to: number) => Fate = () => 'arrive';

  send(note: Note): void {
    this.inboxes.forEach((inbox, to) => inbox.receive(note, this.fate(note, to)));
  }
}

export class ScriptedBus implements InvalidationBus {
  readonly kind = 'scripted';
  readonly publishes: Array<{ id: string; version: number; announced: boolean | undefined }> = [];
  private closed = false;

  constructor(
    private readonly inbox: Inbox,
    private readonly network: Network,
    /** The writes announce themselves (PostgreSQL-only mode): publish sends only unannounced ones. */
    private readonly sentByWrites = false,
  ) {}

  get live(): boolean {
    return this.inbox.busHandlers !== null && this.inbox.busConnected && !this.closed;
  }

  async start(handlers: InvalidationHandlers): Promise<void> {
    this.inbox.busHandlers = handlers;
  }

  async publish(id: string, version: number, options: { announced?: boolean } = {}): Promise<void> {
    this.publishes.push({ id, version, announced: options.announced });
    if (this.sentByWrites && options.announced !== false) return;
    this.network.send({ kind: 'bus', id, version });
  }

  settle(): Promise<void> {
    this.inbox.poll();
    return Promise.resolve();
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

interface Entry {
  version: number;
  session: Session | null;
}

/** The shared tier's server: casSet-1.lua's rules; every store it makes is published. */
export class FakeSharedServer {
  entries = new Map<string, Entry>();
  runId = 1;
  private saved: Map<string, Entry> | null = null;

  constructor(private readonly network: Network) {}

  /** casSet-1.lua: keep a newer version, or the same one unless it is a marker and we bring data. */
  casSet(id: string, version: number, session: Session | null): number {
    const current = this.entries.get(id);
    if (current && (current.version > version || (current.version === version && !(current.session === null && session !== null)))) {
      return current.version;
    }
    this.entries.set(id, { version, session });
    this.network.send({ kind: 'bus', id, version });
    return version;
  }

  read(id: string): Session | null {
    return this.entries.get(id)?.session ?? null;
  }

  held(id: string): number {
    return this.entries.get(id)?.version ?? 0;
  }

  /** The key is removed (eviction, expiry). */
  evict(id: string): void {
    this.entries.delete(id);
  }

  /** Keeps a copy of the contents, as an RDB file would. */
  save(): void {
    this.saved = new Map(this.entries);
  }

  /** A restart: a new run id, and either nothing or the contents last saved. */
  restart(fromSave: boolean): void {
    this.runId++;
    this.entries = fromSave && this.saved ? new Map(this.saved) : new Map();
  }

  clear(): void {
    this.entries.clear();
  }
}

export class SharedUnreachableError extends Error {
  override name = 'SharedUnreachableError';
}

/** One instance's connection to the shared server, behind that instance's circuit breaker. */
export class FakeSharedClient implements SharedCache, SharedCacheHealth {
  readonly tier = 'redis';
  readonly keyspace = 'as:';
  readonly breaker: CircuitBreaker;
  reachable = true;
  /** Calls that fail although the server is reachable (a timeout, a refused script). */
  failNext = 0;
  /** Every write fails while reads work (a user the server refuses scripts to). */
  writesFail = false;
  private hits = 0;
  private misses = 0;
  private readonly checks: Array<() => Promise<void>> = [];
  private readonly tasks: Array<() => Promise<void>> = [];
  /** Reads the server answered, with the breaker state they were answered in. */
  readonly reads: Array<{ id: string; version: number | null; state: string }> = [];
  /** The ids `forget` was called with (undefined: everything). */
  readonly forgotten: Array<string | undefined> = [];

  constructor(
    private readonly server: FakeSharedServer,
    clock: Clock,
  ) {
    this.breaker = new CircuitBreaker({
      name: 'redis',
      now: () => clock.now(),
      probe: async () => {
        this.reach();
        for (const check of this.checks) await check();
      },
      recover: async () => {
        for (const task of this.tasks) await task();
      },
    });
  }

  onServerCheck(check: () => Promise<void>): void {
    this.checks.push(check);
  }

  onRecovery(task: () => Promise<void>): void {
    this.tasks.push(task);
  }

  async serverIdentity(): Promise<string> {
    this.reach();
    return `run-${this.server.runId}`;
  }

  async clearKeyspace(): Promise<number> {
    this.reach();
    const n = this.server.entries.size;
    this.server.clear();
    return n;
  }

  get(id: string): Promise<Session | null> {
    return this.guarded('read', () => this.count(id, this.server.read(id)));
  }

  getMany(ids: readonly string[]): Promise<Map<string, Session>> {
    return this.guarded('read', () => {
      const found = new Map<string, Session>();
      for (const id of ids) {
        const s = this.count(id, this.server.read(id));
        if (s) found.set(id, s);
      }
      return found;
    });
  }

  store(session: Session): Promise<number> {
    return this.guarded('write', () => this.casSet(keyOf(session), session.version, session));
  }

  mark(id: string, version: number): Promise<number> {
    return this.guarded('write', () => this.casSet(id, version, null));
  }

  async markUnguarded(id: string, version: number): Promise<number> {
    this.reach();
    return this.casSet(id, version, null);
  }

  private casSet(id: string, version: number, session: Session | null): number {
    if (this.writesFail) throw new SharedUnreachableError('write refused');
    return this.server.casSet(id, version, session);
  }

  forget(id?: string): void {
    this.forgotten.push(id);
  }

  async invalidate(id: string): Promise<void> {
    await this.mark(id, TOMBSTONE_VERSION);
  }

  stats(): CacheStats {
    return { hits: this.hits, misses: this.misses, size: 0 };
  }

  private count(id: string, s: Session | null): Session | null {
    this.reads.push({ id, version: s?.version ?? null, state: this.breaker.state });
    if (s) this.hits++;
    else this.misses++;
    return s;
  }

  private reach(): void {
    if (!this.reachable) throw new SharedUnreachableError('unreachable');
    if (this.failNext > 0) {
      this.failNext--;
      throw new SharedUnreachableError('call failed');
    }
  }

  private guarded<T>(kind: 'read' | 'write', fn: () => T): Promise<T> {
    return this.breaker.run(async () => {
      this.reach();
      return fn();
    }, kind);
  }
}

/** The repair log's table and the recorded server identities, shared by every instance. */
export class FakeRepairTable {
  rows: Array<{ id: number; sessionId: string; version: number }> = [];
  servers = new Map<string, string>();
  /** While true every statement fails (the source of truth is unreachable). */
  down = false;
  /** While set, recording waits for it (a slow commit). */
  gate: Promise<void> | null = null;
  /** Repairs ever recorded, in order. */
  readonly recorded: CacheRepair[] = [];
  private nextId = 1;
  private drainLock: Promise<unknown> = Promise.resolve();
  private serverLock: Promise<unknown> = Promise.resolve();

  constructor(private readonly network: Network) {}

  insert(sessionId: string, version: number): void {
    this.check();
    this.rows.push({ id: this.nextId++, sessionId, version });
    this.recorded.push({ sessionId, version });
    this.network.send({ kind: 'repair', id: sessionId, version });
  }

  /** The newest version recorded for `id` and not drained yet, or 0. */
  pendingFor(id: string): number {
    return Math.max(0, ...this.rows.filter((r) => r.sessionId === id).map((r) => r.version));
  }

  check(): void {
    if (this.down) throw new Error('repair log unreachable');
  }

  /** FOR UPDATE: one drain at a time, the next waits for the one before. */
  withDrainLock<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.drainLock.then(fn, fn);
    this.drainLock = run.catch(() => undefined);
    return run;
  }

  withServerLock<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.serverLock.then(fn, fn);
    this.serverLock = run.catch(() => undefined);
    return run;
  }
}

export class FakeRepairLog implements CacheRepairLog {
  constructor(
    private readonly table: FakeRepairTable,
    private readonly inbox: Inbox,
  ) {}

  async record(sessionId: string, version: number): Promise<void> {
    await this.table.gate;
    this.table.insert(sessionId, version);
  }

  drain(repair: (batch: CacheRepair[]) => Promise<void>): Promise<number> {
    return this.table.withDrainLock(async () => {
      this.table.check();
      const batch = [...this.table.rows];
      if (batch.length === 0) return 0;
      await repair(batch.map((r) => ({ sessionId: r.sessionId, version: r.version })));
      this.table.check();
      const done = new Set(batch.map((r) => r.id));
      this.table.rows = this.table.rows.filter((r) => !done.has(r.id));
      return batch.length;
    });
  }

  async onRecorded(listener: (repair: CacheRepair | null) => void): Promise<() => Promise<void>> {
    this.inbox.repairListener = listener;
    return async () => {
      this.inbox.repairListener = null;
    };
  }

  verifyServer(keyspace: string, identity: string, clear: () => Promise<void>): Promise<boolean> {
    return this.table.withServerLock(async () => {
      this.table.check();
      if (this.table.servers.get(keyspace) === identity) return false;
      await clear();
      this.table.servers.set(keyspace, identity);
      return true;
    });
  }
}
