/**
 * The one cache the SessionService uses in distributed mode: an in-process near cache in
 * front of a shared tier (Redis), or of nothing (PostgreSQL-only mode), kept coherent across
 * instances by an invalidation bus (Redis pub/sub, or PostgreSQL LISTEN/NOTIFY). It only
 * decides; the tiers, the bus, the repair log and the clock are ports (cache-tiers.ts).
 *
 * Rules that keep it from serving stale data (docs/distributed.md states the bounds):
 * - The near cache is consulted and filled only while the bus is live; a bus that lost its
 *   connection may have missed messages, so the near cache is cleared when it comes back.
 * - A message for version v drops older near entries, and is remembered for a few seconds so
 *   that an older snapshot still in flight (a read that raced the write) is not stored after.
 * - A near hit first lets the bus apply messages that have already arrived; a writer waits
 *   for its own message to come back before it acknowledges.
 * - A bus that sends after the commit (PostgreSQL only: a writer can die in between) lets the
 *   near entries be checked against the committed versions periodically; older ones go.
 * - Taking a session's lock tells the near cache the version committed at that moment
 *   (`noteCommitted`), so a holder never reads one older, however late the message is.
 * - A write that cannot reach the shared tier is recorded in the repair log before it is
 *   acknowledged; the shared tier is repaired from the log before it serves reads again.
 *   Until an announced repair is applied, a shared read older than it is treated as a miss;
 *   lately after a repair was announced, a shared hit first reads what is on the connections.
 *   A repair that cannot be recorded either is kept here, and this instance's breaker stays
 *   open until it is recorded.
 * - A shared server this instance (re)connects to is trusted only if the repair log records
 *   it as checked; otherwise (restarted from an old snapshot, failed over to a lagging
 *   replica) its keys are deleted before any call goes to it.
 */
import { sleep, systemClock, type Clock } from './clock.js';
import { TOMBSTONE_VERSION, type NearCache, type NearEntry, type SharedTier } from './cache-tiers.js';
import type { InvalidationBus } from './invalidation.js';
import type { CacheOrigin, CacheStats, Lifecycle, SessionCache } from './ports.js';
import type { Session } from './types.js';
import { isSessionId, keyOf, sessionKey } from './ids.js';

/** The `answer` of a plain `get`: the session as found. */
const asIs = (session: Session | null): Session | null => session;

export interface CoherentSessionCacheOptions {
  near: NearCache | null;
  /** The shared tier; null in PostgreSQL-only mode. */
  shared?: SharedTier | null;
  bus: InvalidationBus;
  clock?: Clock;
  /** How often an instance that reaches the shared tier looks for repairs nobody announced (default 5 s). */
  repairSweepMs?: number;
  /** Waits between attempts to record a repair (default 50 ms, 250 ms: three attempts). */
  repairRetryMs?: readonly number[];
  /** Longest a writer waits for its own invalidation to come back (default 100 ms). */
  echoTimeoutMs?: number;
  /**
   * For this long after a repair was announced (default 30 s), a shared hit waits for the
   * notices already on this instance's connections before it is served (see `getShared`).
   */
  repairWatchMs?: number;
  /** An invalidation is remembered at least this long, at most twice (default 5 s). */
  recentWindowMs?: number;
  /**
   * How often the near entries are checked against the committed versions, when the bus can
   * tell them (`committedVersions`: a bus that sends after the commit; default 5 s).
   */
  revalidateMs?: number;
  onError?: (err: unknown, what: string) => void;
}

/** Invalidations seen recently, in two rotating generations (each at least `windowMs` old). */
class RecentInvalidations {
  private current = new Map<string, number>();
  private previous = new Map<string, number>();
  private rotatedAt: number;

  constructor(
    private readonly windowMs: number,
    private readonly now: () => number,
  ) {
    this.rotatedAt = now();
  }

  note(id: string, version: number): void {
    this.rotate();
    if ((this.current.get(id) ?? 0) < version) this.current.set(id, version);
  }

  /** The newest version announced for `id` in the window, or 0. */
  floor(id: string): number {
    this.rotate();
    return Math.max(this.current.get(id) ?? 0, this.previous.get(id) ?? 0);
  }

  private rotate(): void {
    const now = this.now();
    if (now - this.rotatedAt < this.windowMs) return;
    this.previous = this.current;
    this.current = new Map();
    this.rotatedAt = now;
  }
}

export class CoherentSessionCache implements SessionCache, Lifecycle {
  readonly tier = 'tiered';
  private readonly near: NearCache | null;
  private readonly shared: SharedTier | null;
  private readonly bus: InvalidationBus;
  private readonly clock: Clock;
  private readonly recent: RecentInvalidations;
  private readonly onError: (err: unknown, what: string) => void;
  private readonly repairSweepMs: number;
  private stopSweeping: (() => void) | null = null;
  private stopListening: (() => Promise<void>) | null = null;
  private stopRevalidating: (() => void) | null = null;
  private revalidating: Promise<void> | null = null;
  private readonly revalidateMs: number;
  private draining: Promise<void> | null = null;
  private repairsRecorded = 0;
  private repairsAnnounced = false;
  /** When this instance last heard a repair announced (clock ms). */
  private repairHeardAt = Number.NEGATIVE_INFINITY;
  private readonly repairWatchMs: number;
  /** Writers waiting to see their own invalidation come back over the bus. */
  private readonly echoWaiters = new Map<string, Array<{ version: number; done: () => void }>>();
  private readonly echoTimeoutMs: number;
  private readonly repairRetryMs: readonly number[];
  /**
   * Repairs announced (by any instance), and versions a lock's lease read as committed before
   * their message arrived, that the shared tier may not have yet: id → version.
   * A shared read older than that is a miss. Cleared when the shared tier is seen holding the
   * version (its invalidation message, a read, a write) or when this instance drained it.
   */
  private readonly unrepaired = new Map<string, number>();
  /** Repairs this instance could not record (the log failed too): id → version. */
  private readonly unrecorded = new Map<string, number>();
  /** Lookups handed on to the repository: the shared tier missed, or could not be asked. */
  private readonly fallbacks = { miss: 0, unavailable: 0 };
  /** Shared writes (and the repairs they lead to) in progress; recovery waits for them. */
  private readonly writesInFlight = new Set<Promise<unknown>>();

  constructor(options: CoherentSessionCacheOptions) {
    this.near = options.near;
    this.shared = options.shared ?? null;
    this.bus = options.bus;
    this.clock = options.clock ?? systemClock;
    this.recent = new RecentInvalidations(options.recentWindowMs ?? 5_000, () => this.clock.now());
    this.onError = options.onError ?? (() => undefined);
    this.repairSweepMs = options.repairSweepMs ?? 5_000;
    this.echoTimeoutMs = options.echoTimeoutMs ?? 100;
    this.repairWatchMs = options.repairWatchMs ?? 30_000;
    this.repairRetryMs = options.repairRetryMs ?? [50, 250];
    this.revalidateMs = options.revalidateMs ?? 5_000;
    if (this.shared) {
      const { health, repairs } = this.shared;
      health.onServerCheck(async () => {
        const identity = await health.serverIdentity();
        await repairs.verifyServer(health.keyspace, identity, async () => {
          await health.clearKeyspace();
        });
      });
      health.onRecovery(async () => {
        // A write that failed fast just before this recovery began may still be recording
        // its repair; the drain must see it. Writes from now on reach the shared tier.
        await Promise.allSettled([...this.writesInFlight]);
        // Repairs the log refused earlier: recorded (and announced to every instance) now,
        // or the breaker stays open.
        for (const [id, version] of [...this.unrecorded]) {
          await repairs.record(id, version);
          if (this.unrecorded.get(id) === version) this.unrecorded.delete(id);
        }
        // Repairs recorded (by instances still cut off) while we drain are drained too.
        do {
          this.repairsAnnounced = false;
          await this.drainRepairs(true);
        } while (this.repairsAnnounced);
      });
    }
  }

  async ready(): Promise<void> {
    await this.bus.start({
      onInvalidate: (id, version) => {
        // Sent by the shared tier itself as part of the write: it holds `version` now.
        this.invalidated(id, version);
        this.repaired(id, version);
      },
      onReset: () => {
        // Messages may have been missed: forget the entries. The invalidations that did
        // arrive stay remembered, so that a read in flight across the reset cannot bring
        // back a version older than one already announced.
        this.near?.clear();
        this.shared?.cache.forget?.();
        for (const id of [...this.echoWaiters.keys()]) this.echoed(id, Number.MAX_SAFE_INTEGER);
      },
    });
    if (this.near && this.bus.committedVersions) {
      this.stopRevalidating = this.clock.every(this.revalidateMs, () => void this.revalidate());
    }
    if (this.shared) {
      const { repairs, health } = this.shared;
      this.stopListening = await repairs.onRecorded((repair) => {
        // The shared tier could not carry this write's invalidation (it is why there is a
        // repair), so the near cache learns of it here, whatever the state of our breaker.
        if (repair) {
          this.invalidated(repair.sessionId, repair.version);
          this.noteUnrepaired(repair.sessionId, repair.version);
          this.repairHeardAt = this.clock.now();
        }
        this.repairsAnnounced = true;
        if (health.breaker.isClosed) void this.drainRepairs(false);
      });
      this.stopSweeping = this.clock.every(this.repairSweepMs, () => {
        if (health.breaker.isClosed) void this.drainRepairs(false);
        else void health.breaker.recover();
      });
    }
  }

  async close(): Promise<void> {
    // A created session's store may still be on its way (`created`).
    await Promise.allSettled([...this.writesInFlight]);
    this.stopSweeping?.();
    this.stopSweeping = null;
    this.stopRevalidating?.();
    this.stopRevalidating = null;
    await this.revalidating;
    await this.stopListening?.();
    this.stopListening = null;
    await this.draining?.catch(() => undefined);
    await this.bus.close();
  }

  /**
   * Checks the near entries against the committed versions (the bus's `committedVersions`),
   * in statements of at most 1,000 sessions, and drops every entry older than its row, or
   * whose row is gone, as if its invalidation had arrived: the path that catches a write
   * whose message was never sent (its writer died between the commit and the publish, or
   * the publish failed). Not an echo: a writer here still waits for its own message.
   * Resolves when done; a check already running is not started twice.
   */
  revalidate(): Promise<void> {
    const near = this.near;
    const bus = this.bus;
    if (!near || !bus.committedVersions || !bus.live) return Promise.resolve();
    this.revalidating ??= (async () => {
      const entries = near.entryVersions();
      for (let i = 0; i < entries.length; i += 1_000) {
        const chunk = entries.slice(i, i + 1_000);
        const committed = await bus.committedVersions?.(chunk.map(([id]) => id));
        if (!committed) return;
        for (const [id, version] of chunk) {
          const current = committed.get(id) ?? TOMBSTONE_VERSION;
          if (current <= version) continue;
          this.recent.note(id, current);
          near.forgetOlderThan(id, current);
        }
      }
    })()
      .catch((err: unknown) => this.onError(err, 'near cache revalidation'))
      .finally(() => {
        this.revalidating = null;
      });
    return this.revalidating;
  }

  private invalidated(id: string, version: number): void {
    this.recent.note(id, version);
    this.near?.forgetOlderThan(id, version);
    this.shared?.cache.forget?.(id);
    this.echoed(id, version);
  }

  /**
   * A lock's lease read `version` as committed: an older near entry goes, and an older
   * snapshot is refused for the window, as if the write's invalidation had arrived. Until
   * that message arrives, a shared snapshot older than `version` is a miss too (the write may
   * have left a repair this instance has not heard of). Not an echo: a writer here still
   * waits for its own message.
   */
  noteCommitted(id: string, version: number): void {
    const heard = this.recent.floor(id) >= version;
    this.recent.note(id, version);
    this.near?.forgetOlderThan(id, version);
    // Cleared by the message, or by the first shared read or write that holds `version`.
    if (this.shared && !heard) this.noteUnrepaired(id, version);
  }

  private get nearUsable(): boolean {
    return this.near !== null && this.bus.live;
  }

  get(id: string): Promise<Session | null> {
    const near = this.nearUsable ? this.near : null;
    if (near) {
      if (near.peek(id)) return this.answerNear(near, id, asIs);
      near.countMiss();
    }
    return this.getShared(id);
  }

  /**
   * `get` of `sessionKey(tenant, id)` answered through `answer`: a near hit finds its entry
   * without building the key and is answered in `answerNear`'s one callback, so the caller's
   * next step costs no further promise hop. An id that is not a session id is not looked for
   * in the shared tier (`answer` gets null and refuses it).
   */
  getFor<T>(tenant: string, id: string, answer: (session: Session | null) => T | PromiseLike<T>): Promise<T> {
    const near = this.nearUsable ? this.near : null;
    if (near) {
      const entry = near.find(tenant, id);
      if (entry) return this.answerNear(near, entry, answer);
      near.countMiss();
    }
    if (!isSessionId(id)) return Promise.resolve(null).then(answer);
    return this.getShared(sessionKey(tenant, id)).then(answer);
  }

  /**
   * A near hit. An invalidation that reached this instance before another instance's write
   * was acknowledged is applied before we answer from memory (rule 4 of docs/distributed.md).
   * The hit is the one callback on the bus's settle (no further awaits), which also runs
   * `answer`, so it costs that wait and one microtask.
   */
  private answerNear<T>(near: NearCache, found: string | NearEntry, answer: (session: Session | null) => T | PromiseLike<T>): Promise<T> {
    return this.bus.settle().then(() => {
      const hit = !this.bus.live ? null : typeof found === 'string' ? near.getSync(found) : near.hit(found);
      return hit ? answer(hit) : this.getShared(typeof found === 'string' ? found : found.key).then(answer);
    });
  }

  /**
   * `get` past the near cache: the shared tier, or null (a miss) without one. One callback on
   * the tier's promise (a Redis hit is on the hot path).
   */
  private getShared(id: string): Promise<Session | null> {
    const shared = this.shared;
    if (!shared) return Promise.resolve(null);
    let pending: Promise<Session | null>;
    try {
      pending = shared.cache.get(id);
    } catch (err) {
      return Promise.resolve(this.sharedUnavailable(err));
    }
    return pending.then(
      (cached) => (cached && this.watchingRepairs() ? this.bus.settle().then(() => this.sharedAnswer(cached, id), () => this.sharedAnswer(cached, id)) : this.sharedAnswer(cached, id)),
      this.sharedUnavailable,
    );
  }

  /** A shared reply as `get` answers it: unless a repair is pending, and filled into the near tier. */
  private sharedAnswer(cached: Session | null, id: string): Session | null {
    try {
      const found = this.fresh(cached, id);
      if (found) this.fillNear(found);
      else this.fallbacks.miss++;
      return found;
    } catch (err) {
      return this.sharedUnavailable(err);
    }
  }

  /** A shared `get` that failed: a miss, counted and reported (bound: it is the hot path's error callback). */
  private readonly sharedUnavailable = (err: unknown): null => {
    this.fallbacks.unavailable++;
    this.onError(err, `${this.shared?.cache.tier ?? 'shared'} get`);
    return null;
  };

  /**
   * Whether a repair was announced lately: some instance could not write to the shared tier,
   * and may still be cut off from it while this one reads it again (window (b) of
   * docs/distributed.md, "Staleness bound after an outage"). Its repair's notice can reach
   * this instance at the same time as a shared reply; meanwhile a shared hit first lets the
   * event loop read what is on the connections (the bus's settle, a poll phase after the
   * reply), so a notice that arrived first is applied before the hit is served.
   */
  private watchingRepairs(): boolean {
    return this.clock.now() - this.repairHeardAt < this.repairWatchMs;
  }

  async getMany(ids: readonly string[]): Promise<Map<string, Session>> {
    const found = new Map<string, Session>();
    const rest: string[] = [];
    const useNear = this.nearUsable;
    if (useNear) await this.bus.settle();
    for (const id of ids) {
      const hit = useNear ? this.near?.getSync(id) : null;
      if (hit) found.set(id, hit);
      else rest.push(id);
    }
    if (rest.length > 0 && this.shared) {
      try {
        let hits = 0;
        const replies = await this.shared.cache.getMany(rest);
        if (replies.size > 0 && this.watchingRepairs()) await this.bus.settle().catch(() => undefined);
        for (const [id, cached] of replies) {
          const s = this.fresh(cached, id);
          if (!s) continue;
          hits++;
          found.set(id, s);
          this.fillNear(s);
        }
        this.fallbacks.miss += rest.length - hits;
      } catch (err) {
        this.fallbacks.unavailable += rest.length;
        this.onError(err, `${this.shared.cache.tier} getMany`);
      }
    }
    return found;
  }

  async set(session: Session, origin: CacheOrigin = 'write'): Promise<void> {
    if (origin === 'created') {
      this.created(session);
      return;
    }
    if (this.shared) {
      // Tracked from the call on, through the repair if it fails: recovery waits for it.
      const stored = await this.tracked(this.storeOrRepair(this.shared, session, origin));
      if (stored === null) return;
      if (stored > session.version) {
        this.near?.forgetOlderThan(keyOf(session), stored);
        return;
      }
      if (origin !== 'read') await this.echo(keyOf(session), session.version);
    } else if (origin !== 'read') {
      try {
        const echoed = this.echo(keyOf(session), session.version);
        await this.bus.publish(keyOf(session), session.version, { announced: origin === 'write' });
        await echoed;
      } catch (err) {
        this.onError(err, 'invalidation publish');
      }
    }
    this.fillNear(session);
  }

  /**
   * The first version of a session just inserted. No instance can hold an older one: neither
   * tier caches a miss, and a deleted id's entries were dropped (and its versions refused for
   * a while) before its delete was acknowledged. So nobody needs telling and the writer does
   * not wait. Without a shared tier the near cache takes it now. With one, the store goes out
   * in the background, tracked so that recovery and `close` wait for it, and the near cache
   * takes the snapshot only once Redis holds exactly that version: a reused id's delete marker
   * refuses it (and then refuses the next writes too, which therefore publish nothing), so an
   * entry filled before the answer could outlive a later write. A store that fails needs no
   * repair, as there is no older version the tier could go on serving.
   */
  private created(session: Session): void {
    const shared = this.shared;
    if (!shared) {
      this.fillNear(session);
      return;
    }
    void this.tracked(this.storeOrRepair(shared, session, 'created')).then((stored) => {
      if (stored === session.version) this.fillNear(session);
      else if (stored !== null) this.near?.forgetOlderThan(keyOf(session), stored);
    });
  }

  /**
   * Resolves when this instance's own subscriber has received the invalidation for
   * `version` (or after echoTimeoutMs), and the bus has settled once more. The transport
   * hands a message to every subscriber in the same pass, so by then the other instances have
   * it too, and a read they start after this write is acknowledged finds the entry dropped.
   */
  private async echo(id: string, version: number): Promise<void> {
    if (!this.bus.live || !this.near || this.recent.floor(id) >= version) return;
    await new Promise<void>((resolve) => {
      const cancel = this.clock.after(this.echoTimeoutMs, () => done());
      const done = () => {
        cancel();
        const list = this.echoWaiters.get(id);
        if (list) {
          const rest = list.filter((w) => w.done !== done);
          if (rest.length > 0) this.echoWaiters.set(id, rest);
          else this.echoWaiters.delete(id);
        }
        resolve();
      };
      const list = this.echoWaiters.get(id) ?? [];
      list.push({ version, done });
      this.echoWaiters.set(id, list);
    });
    // The transport writes the message to each subscriber in turn: let copies that arrive
    // just after ours (same process, or a neighbour on the same host) be read.
    await this.bus.settle();
  }

  private echoed(id: string, version: number): void {
    const list = this.echoWaiters.get(id);
    if (!list) return;
    for (const w of list.filter((x) => x.version <= version)) w.done();
  }

  async invalidate(id: string): Promise<void> {
    this.near?.invalidate(id);
    if (this.shared) {
      const shared = this.shared;
      const marked = await this.tracked(
        shared.cache.invalidate(id).then(
          () => true,
          async (err: unknown) => {
            this.onError(err, `${shared.cache.tier} invalidate`);
            await this.repair(shared, id, TOMBSTONE_VERSION);
            return false;
          },
        ),
      );
      if (marked) await this.echo(id, TOMBSTONE_VERSION);
    } else {
      try {
        const echoed = this.echo(id, TOMBSTONE_VERSION);
        // Purges, deletes, and the sweeps' expiries and retention purges land here after
        // their statements committed: the tombstone is always announced.
        await this.bus.publish(id, TOMBSTONE_VERSION, { announced: false });
        await echoed;
      } catch (err) {
        this.onError(err, 'invalidation publish');
      }
    }
  }

  stats(): CacheStats {
    const tiers = Object.values(this.statsByTier());
    return {
      hits: tiers.reduce((n, t) => n + t.hits, 0),
      // A miss in the near cache that the shared tier answers is a hit overall.
      misses: tiers.at(-1)?.misses ?? 0,
      size: this.near?.stats().size ?? 0,
    };
  }

  statsByTier(): Record<string, CacheStats> {
    const out: Record<string, CacheStats> = {};
    if (this.near) out[this.near.tier] = this.near.stats();
    if (this.shared) out[this.shared.cache.tier] = this.shared.cache.stats();
    return out;
  }

  /** By reason: `<tier>_miss` (the shared tier missed), `<tier>_unavailable` (it could not be asked). */
  fallbackStats(): Record<string, number> {
    if (!this.shared) return {};
    const { tier } = this.shared.cache;
    return { [`${tier}_miss`]: this.fallbacks.miss, [`${tier}_unavailable`]: this.fallbacks.unavailable };
  }

  /** Writes recorded for repair by this instance (the shared tier unreachable at the time). */
  get repairsRecordedCount(): number {
    return this.repairsRecorded;
  }

  private fillNear(session: Session): void {
    if (!this.nearUsable || this.recent.floor(keyOf(session)) > session.version) return;
    this.near?.set(session);
  }

  /** The version the shared tier holds afterwards, or null when the update failed (and was repaired, unless created or read). */
  private async storeOrRepair(shared: SharedTier, session: Session, origin: CacheOrigin): Promise<number | null> {
    try {
      const stored = await shared.cache.store(session, { created: origin === 'created' });
      this.repaired(keyOf(session), stored);
      return stored;
    } catch (err) {
      this.onError(err, `${shared.cache.tier} set`);
      // The shared tier may still hold an older version; make sure it never serves it
      // again. This instance's near entry is older too.
      this.near?.forgetOlderThan(keyOf(session), session.version);
      if (origin !== 'read' && origin !== 'created') await this.repair(shared, keyOf(session), session.version);
      return null;
    }
  }

  /** Keeps `work` in the set recovery waits for until it settles. */
  private tracked<T>(work: Promise<T>): Promise<T> {
    this.writesInFlight.add(work);
    void work.then(
      () => this.writesInFlight.delete(work),
      () => this.writesInFlight.delete(work),
    );
    return work;
  }

  /** A shared snapshot older than an announced repair is a miss (the tier holds an old version). */
  private fresh(cached: Session | null, id: string): Session | null {
    if (this.unrepaired.size === 0) return cached;
    const pending = this.unrepaired.get(id);
    if (cached === null || pending === undefined) return cached;
    if (cached.version >= pending) {
      this.unrepaired.delete(id);
      return cached;
    }
    return null;
  }

  private noteUnrepaired(id: string, version: number): void {
    if ((this.unrepaired.get(id) ?? -1) < version) this.unrepaired.set(id, version);
  }

  /** The shared tier holds `version` (or newer) of `id` now. */
  private repaired(id: string, version: number): void {
    const pending = this.unrepaired.get(id);
    if (pending !== undefined && pending <= version) this.unrepaired.delete(id);
  }

  /**
   * After a write could not update the shared tier: records the repair (retrying), then,
   * while the breaker is closed (a single failed call, the tier otherwise fine), applies it
   * before the write is acknowledged, so no instance reads the older version afterwards. A
   * repair the log refuses too is kept, and the breaker is opened: this instance then reads
   * nothing from the shared tier, and recovery records the repair before it closes.
   */
  private async repair(shared: SharedTier, id: string, version: number): Promise<void> {
    this.repairsRecorded++;
    this.noteUnrepaired(id, version);
    for (let attempt = 0; ; attempt++) {
      try {
        await shared.repairs.record(id, version);
        break;
      } catch (err) {
        const wait = this.repairRetryMs[attempt];
        if (wait === undefined) {
          this.onError(err, 'cache repair record');
          if ((this.unrecorded.get(id) ?? -1) < version) this.unrecorded.set(id, version);
          shared.health.breaker.trip(err);
          return;
        }
        await sleep(this.clock, wait);
      }
    }
    if (shared.health.breaker.isClosed) await this.drainRepairs(false);
  }

  /**
   * Applies recorded repairs to the shared tier. During recovery (`unguarded`) the breaker
   * is not yet closed, so the markers are written around it; a failure there keeps it open.
   */
  private drainRepairs(unguarded: boolean): Promise<void> {
    const shared = this.shared;
    if (!shared) return Promise.resolve();
    const run = async () => {
      await shared.repairs.drain(async (batch) => {
        await Promise.all(
          batch.map(async (r) => {
            const stored = unguarded
              ? await shared.cache.markUnguarded(r.sessionId, r.version)
              : await shared.cache.mark(r.sessionId, r.version);
            this.repaired(r.sessionId, stored);
          }),
        );
      });
    };
    if (unguarded) return run();
    this.draining ??= run()
      .catch((err: unknown) => this.onError(err, 'cache repair'))
      .finally(() => {
        this.draining = null;
      });
    return this.draining;
  }
}
