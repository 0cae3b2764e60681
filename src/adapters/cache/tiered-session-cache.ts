/**
 * The one cache the SessionService uses in distributed mode: an in-process near cache in
 * front of Redis (or of nothing, in PostgreSQL-only mode), kept coherent across instances by
 * an invalidation bus (Redis pub/sub, or PostgreSQL LISTEN/NOTIFY).
 *
 * Rules that keep it from serving stale data:
 * - The near cache is consulted and filled only while the bus is live; a bus that lost its
 *   connection may have missed messages, so the near cache is cleared when it comes back.
 * - A message for version v drops older near entries, and is remembered for a few seconds so
 *   that an older snapshot still in flight (a read that raced the write) is not stored after.
 * - A write that cannot reach Redis is recorded in the repair log before it is acknowledged;
 *   Redis is repaired from the log before it serves reads again (see docs/distributed.md).
 *   Until an announced repair is applied, a Redis read older than it is treated as a miss.
 *   A repair that cannot be recorded either is kept here, and this instance's breaker stays
 *   open until it is recorded.
 * - A Redis server this instance (re)connects to is trusted only if PostgreSQL records it as
 *   checked; otherwise (restarted from an old RDB/AOF, failed over to a lagging replica) its
 *   keys under our prefix are deleted before any call goes to it.
 */
import type { CacheOrigin, CacheStats, Lifecycle, SessionCache } from '../../core/ports.js';
import type { Session } from '../../core/types.js';
import type { LruSessionCache } from '../memory/lru-session-cache.js';
import type { PostgresCacheRepairLog } from '../postgres/cache-repair-log.js';
import { TOMBSTONE_VERSION, type RedisSessionCache } from '../redis/redis-session-cache.js';
import type { GuardedRedis } from '../redis/guarded-redis.js';
import type { InvalidationBus } from '../../core/invalidation.js';

export interface TieredSessionCacheOptions {
  near: LruSessionCache | null;
  /** The shared tier; null in PostgreSQL-only mode. */
  redis?: { cache: RedisSessionCache; guard: GuardedRedis; repairs: PostgresCacheRepairLog } | null;
  bus: InvalidationBus | null;
  /** How often an instance that reaches Redis looks for repairs nobody announced (default 5 s). */
  repairSweepMs?: number;
  /** Waits between attempts to record a repair (default 50 ms, 250 ms: three attempts). */
  repairRetryMs?: readonly number[];
  onError?: (err: unknown, what: string) => void;
  /** Longest a writer waits for its own invalidation to come back (default 100 ms). */
  echoTimeoutMs?: number;
}

/** Invalidations seen recently, in two rotating generations (each at least `windowMs` old). */
class RecentInvalidations {
  private current = new Map<string, number>();
  private previous = new Map<string, number>();
  private rotatedAt = Date.now();

  constructor(private readonly windowMs: number) {}

  note(id: string, version: number): void {
    this.rotate();
    if ((this.current.get(id) ?? 0) < version) this.current.set(id, version);
  }

  /** The newest version announced for `id` in the window, or 0. */
  floor(id: string): number {
    this.rotate();
    return Math.max(this.current.get(id) ?? 0, this.previous.get(id) ?? 0);
  }

  clear(): void {
    this.current.clear();
    this.previous.clear();
  }

  private rotate(): void {
    const now = Date.now();
    if (now - this.rotatedAt < this.windowMs) return;
    this.previous = this.current;
    this.current = new Map();
    this.rotatedAt = now;
  }
}

export class TieredSessionCache implements SessionCache, Lifecycle {
  readonly tier = 'tiered';
  private readonly near: LruSessionCache | null;
  private readonly redis: TieredSessionCacheOptions['redis'];
  private readonly bus: InvalidationBus | null;
  private readonly recent = new RecentInvalidations(5_000);
  private readonly onError: (err: unknown, what: string) => void;
  private readonly repairSweepMs: number;
  private sweeper: NodeJS.Timeout | null = null;
  private stopListening: (() => Promise<void>) | null = null;
  private draining: Promise<void> | null = null;
  private repairsRecorded = 0;
  private repairsAnnounced = false;
  private settleGate: Promise<void> | null = null;
  /** Writers waiting to see their own invalidation come back over the bus. */
  private readonly echoWaiters = new Map<string, Array<{ version: number; done: () => void }>>();
  private readonly echoTimeoutMs: number;
  private readonly repairRetryMs: readonly number[];
  /**
   * Repairs announced (by any instance) that Redis may not have yet: id → version. A Redis
   * read older than that is a miss. Cleared when Redis is seen holding the version (its
   * invalidation message, a read, a write) or when this instance drained the repair.
   */
  private readonly unrepaired = new Map<string, number>();
  /** Repairs this instance could not record (PostgreSQL failed too): id → version. */
  private readonly unrecorded = new Map<string, number>();
  /** Lookups handed on to the repository: Redis missed, or could not be asked. */
  private readonly fallbacks = { redis_miss: 0, redis_unavailable: 0 };
  /** Redis writes (and the repairs they lead to) in progress; recovery waits for them. */
  private readonly writesInFlight = new Set<Promise<unknown>>();

  constructor(options: TieredSessionCacheOptions) {
    this.near = options.near;
    this.redis = options.redis ?? null;
    this.bus = options.bus;
    this.onError = options.onError ?? (() => undefined);
    this.repairSweepMs = options.repairSweepMs ?? 5_000;
    this.echoTimeoutMs = options.echoTimeoutMs ?? 100;
    this.repairRetryMs = options.repairRetryMs ?? [50, 250];
    if (this.redis) {
      const { guard, repairs } = this.redis;
      guard.onServerCheck(async () => {
        const identity = await guard.serverIdentity();
        await repairs.verifyServer(guard.keys.prefix, identity, async () => {
          await guard.clearKeyspace();
        });
      });
      guard.onRecovery(async () => {
        // A write that failed fast just before this recovery began may still be recording
        // its repair; the drain must see it. Writes from now on reach Redis (draining).
        await Promise.allSettled([...this.writesInFlight]);
        // Repairs PostgreSQL refused earlier: recorded (and announced to every instance)
        // now, or the breaker stays open.
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
    await this.bus?.start({
      onInvalidate: (id, version) => {
        // Sent by Redis itself (casSet): Redis holds `version` now.
        this.invalidated(id, version);
        this.repaired(id, version);
      },
      onReset: () => {
        this.near?.clear();
        this.recent.clear();
        for (const id of [...this.echoWaiters.keys()]) this.echoed(id, Number.MAX_SAFE_INTEGER);
      },
    });
    if (this.redis) {
      const { repairs, guard } = this.redis;
      this.stopListening = await repairs.onRecorded((repair) => {
        // Redis could not carry this write's invalidation (it is why there is a repair),
        // so the near cache learns of it here, whatever the state of our own breaker.
        if (repair) {
          this.invalidated(repair.sessionId, repair.version);
          this.noteUnrepaired(repair.sessionId, repair.version);
        }
        this.repairsAnnounced = true;
        if (guard.breaker.isClosed) void this.drainRepairs(false);
      });
      this.sweeper = setInterval(() => {
        if (guard.breaker.isClosed) void this.drainRepairs(false);
        else void guard.breaker.recover();
      }, this.repairSweepMs);
      this.sweeper.unref();
    }
  }

  async close(): Promise<void> {
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = null;
    await this.stopListening?.();
    this.stopListening = null;
    await this.draining?.catch(() => undefined);
    await this.bus?.close();
  }

  private invalidated(id: string, version: number): void {
    this.recent.note(id, version);
    this.near?.forgetOlderThan(id, version);
    this.echoed(id, version);
  }

  /**
   * Yields until the event loop has polled its sockets once more after the call. The first
   * immediate runs after the current poll phase; the second after the next one, which picks
   * up data that arrived while this turn was running (Redis may write another client's
   * reply a few microseconds before our subscriber's message). Reads that start in the same
   * turn share one gate.
   */
  private settle(): Promise<void> {
    this.settleGate ??= new Promise<void>((resolve) =>
      setImmediate(() => {
        this.settleGate = null;
        setImmediate(resolve);
      }),
    );
    return this.settleGate;
  }

  private get nearUsable(): boolean {
    return this.near !== null && this.bus !== null && this.bus.live;
  }

  async get(id: string): Promise<Session | null> {
    if (this.nearUsable && this.near) {
      if (this.near.peek(id)) {
        // Let the event loop read what has already arrived: an invalidation Redis sent before
        // acknowledging another instance's write is applied before we answer from memory.
        await this.settle();
        const hit = this.near.getSync(id);
        if (hit) return hit;
      } else {
        this.near.countMiss();
      }
    }
    if (!this.redis) return null;
    try {
      const found = this.fresh(await this.redis.cache.get(id), id);
      if (found) this.fillNear(found);
      else this.fallbacks.redis_miss++;
      return found;
    } catch (err) {
      this.fallbacks.redis_unavailable++;
      this.onError(err, 'redis get');
      return null;
    }
  }

  async getMany(ids: readonly string[]): Promise<Map<string, Session>> {
    const found = new Map<string, Session>();
    const rest: string[] = [];
    const useNear = this.nearUsable;
    if (useNear) await this.settle();
    for (const id of ids) {
      const hit = useNear ? this.near?.getSync(id) : null;
      if (hit) found.set(id, hit);
      else rest.push(id);
    }
    if (rest.length > 0 && this.redis) {
      try {
        let hits = 0;
        for (const [id, cached] of await this.redis.cache.getMany(rest)) {
          const s = this.fresh(cached, id);
          if (!s) continue;
          hits++;
          found.set(id, s);
          this.fillNear(s);
        }
        this.fallbacks.redis_miss += rest.length - hits;
      } catch (err) {
        this.fallbacks.redis_unavailable += rest.length;
        this.onError(err, 'redis getMany');
      }
    }
    return found;
  }

  async set(session: Session, origin: CacheOrigin = 'write'): Promise<void> {
    if (this.redis) {
      // Tracked from the call on, through the repair if it fails: recovery waits for it.
      const stored = await this.tracked(this.storeOrRepair(session, origin));
      if (stored === null) return;
      if (stored > session.version) {
        this.near?.forgetOlderThan(session.id, stored);
        return;
      }
      if (origin !== 'read') await this.echo(session.id, session.version);
    } else if (origin !== 'read' && this.bus) {
      try {
        const echoed = this.echo(session.id, session.version);
        await this.bus.publish(session.id, session.version, { announced: origin === 'write' });
        await echoed;
      } catch (err) {
        this.onError(err, 'invalidation publish');
      }
    }
    this.fillNear(session);
  }

  /**
   * Resolves when this instance's own subscriber has received the invalidation for
   * `version` (or after echoTimeoutMs), and the event loop has polled once more. The transport hands a message to every subscriber in
   * the same pass, so by then the other instances have it too, and a read they start after
   * this write is acknowledged finds the near entry already dropped.
   */
  private async echo(id: string, version: number): Promise<void> {
    if (!this.bus?.live || !this.near || this.recent.floor(id) >= version) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => done(), this.echoTimeoutMs);
      const done = () => {
        clearTimeout(timer);
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
    // Redis writes the message to each subscriber in turn; give the loop a moment to read
    // copies that arrive just after ours (same process, or a neighbour on the same host).
    await this.settle();
  }

  private echoed(id: string, version: number): void {
    const list = this.echoWaiters.get(id);
    if (!list) return;
    for (const w of list.filter((x) => x.version <= version)) w.done();
  }

  async invalidate(id: string): Promise<void> {
    await this.near?.invalidate(id);
    if (this.redis) {
      const redis = this.redis;
      const marked = await this.tracked(
        redis.cache.invalidate(id).then(
          () => true,
          async (err: unknown) => {
            this.onError(err, 'redis invalidate');
            await this.repair(id, TOMBSTONE_VERSION);
            return false;
          },
        ),
      );
      if (marked) await this.echo(id, TOMBSTONE_VERSION);
    } else if (this.bus) {
      try {
        const echoed = this.echo(id, TOMBSTONE_VERSION);
        // Not only purges (whose statement announced itself) land here: sweeps expire and
        // purge in statements of their own, so the tombstone is always announced.
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
      // A miss in the near cache that Redis answers is a hit overall.
      misses: tiers.at(-1)?.misses ?? 0,
      size: this.near?.stats().size ?? 0,
    };
  }

  statsByTier(): Record<string, CacheStats> {
    const out: Record<string, CacheStats> = {};
    if (this.near) out[this.near.tier] = this.near.stats();
    if (this.redis) out[this.redis.cache.tier] = this.redis.cache.stats();
    return out;
  }

  fallbackStats(): Record<string, number> {
    return this.redis ? { ...this.fallbacks } : {};
  }

  /** Writes recorded for repair by this instance (Redis unreachable at the time). */
  get repairsRecordedCount(): number {
    return this.repairsRecorded;
  }

  private fillNear(session: Session): void {
    if (!this.nearUsable || this.recent.floor(session.id) > session.version) return;
    void this.near?.set(session);
  }

  /** The version Redis holds afterwards, or null when the update failed (and was repaired). */
  private async storeOrRepair(session: Session, origin: CacheOrigin): Promise<number | null> {
    const redis = this.redis;
    if (!redis) return null;
    try {
      const stored = await redis.cache.store(session);
      this.repaired(session.id, stored);
      return stored;
    } catch (err) {
      this.onError(err, 'redis set');
      // Redis may still hold an older version; make sure it never serves it again. This
      // instance's near entry is older too.
      this.near?.forgetOlderThan(session.id, session.version);
      if (origin !== 'read') await this.repair(session.id, session.version);
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

  /** A Redis snapshot older than an announced repair is a miss (Redis holds an old version). */
  private fresh(cached: Session | null, id: string): Session | null {
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

  /** Redis holds `version` (or newer) of `id` now. */
  private repaired(id: string, version: number): void {
    const pending = this.unrepaired.get(id);
    if (pending !== undefined && pending <= version) this.unrepaired.delete(id);
  }

  /**
   * After a write could not update Redis: records the repair (retrying), then, while the
   * breaker is closed (a single failed call, Redis otherwise fine), applies it before the
   * write is acknowledged, so no instance reads the older version from Redis afterwards.
   * A repair PostgreSQL refuses too is kept, and the breaker is opened: this instance then
   * reads nothing from Redis, and recovery records the repair before it closes.
   */
  private async repair(id: string, version: number): Promise<void> {
    const redis = this.redis;
    if (!redis) return;
    this.repairsRecorded++;
    this.noteUnrepaired(id, version);
    for (let attempt = 0; ; attempt++) {
      try {
        await redis.repairs.record(id, version);
        break;
      } catch (err) {
        const wait = this.repairRetryMs[attempt];
        if (wait === undefined) {
          this.onError(err, 'cache repair record');
          if ((this.unrecorded.get(id) ?? -1) < version) this.unrecorded.set(id, version);
          redis.guard.breaker.trip(err);
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, wait));
      }
    }
    if (redis.guard.breaker.isClosed) await this.drainRepairs(false);
  }

  /**
   * Applies recorded repairs to Redis. During recovery (`unguarded`) the breaker is not yet
   * closed, so the markers are written directly; a failure there keeps the breaker open.
   */
  private drainRepairs(unguarded: boolean): Promise<void> {
    const redis = this.redis;
    if (!redis) return Promise.resolve();
    const run = async () => {
      await redis.repairs.drain(async (batch) => {
        await Promise.all(
          batch.map(async (r) => {
            const stored = unguarded ? await redis.cache.markUnguarded(r.sessionId, r.version) : await redis.cache.mark(r.sessionId, r.version);
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
