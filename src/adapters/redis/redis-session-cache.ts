/**
 * The shared cache tier: one snapshot per session under `<prefix>s:{<tag>}` (RedisKeys), stored as
 * "<version>:<body>" (snapshot-format.ts) by a Lua script that never replaces a newer version with an older one
 * and publishes an invalidation for the near caches of every instance in the same step.
 * Reads are one GET; the TTL is refreshed (ttlRefresh-1.lua) only once it may have run below
 * half (the value is never rewritten to extend it). Every call goes
 * through the Redis circuit breaker and throws when Redis is unreachable; the coherence
 * policy in front (core/cache-coherence.ts) decides what that means.
 */
import type { RedisClientType } from 'redis';
import { TOMBSTONE_VERSION, type SharedCache } from '../../core/cache-tiers.js';
import type { CacheStats, SessionCache } from '../../core/ports.js';
import type { Session } from '../../core/types.js';
import { formatInvalidation } from '../../core/invalidation.js';
import { keyOf } from '../../core/ids.js';
import type { CallKind } from './circuit-breaker.js';
import type { GuardedRedis } from './guarded-redis.js';
import { SCRIPTS } from './session-scripts.js';
import { DecodedSnapshots, encodeSnapshot, SNAPSHOT_LAYOUT, type SnapshotLayout } from './snapshot-format.js';

export interface RedisSessionCacheOptions {
  redis: GuardedRedis;
  /** Lifetime of a snapshot that nobody reads (slides on every read). Default 1 hour. */
  ttlMs?: number;
  /** Lifetime of a delete marker. Default 60 s. */
  tombstoneTtlMs?: number;
  /** The layout snapshots are written in (snapshot-format.ts). Default 2; both are read. */
  snapshotLayout?: SnapshotLayout;
  /**
   * Text of the last value read per key kept with its decoded session, so a value read again
   * unchanged is not parsed again (`DecodedSnapshots`). Default 2,000,000 characters: about
   * 8,700 typical sessions and 8 MB of heap. 0: none.
   */
  decodedMaxChars?: number;
}

export class RedisSessionCache implements SessionCache, SharedCache {
  readonly tier = 'redis';
  readonly channel: string;
  private readonly redis: GuardedRedis;
  private readonly ttlMs: number;
  private readonly tombstoneTtlMs: number;
  private readonly layout: SnapshotLayout;
  private readonly decoded: DecodedSnapshots;
  private hits = 0;
  private misses = 0;
  private errors = 0;
  private readonly countError = (): void => {
    this.errors++;
  };
  private threshold = '';
  private thresholdAt = -Infinity;

  constructor(options: RedisSessionCacheOptions) {
    this.redis = options.redis;
    this.ttlMs = options.ttlMs ?? 3_600_000;
    this.tombstoneTtlMs = options.tombstoneTtlMs ?? 60_000;
    this.layout = options.snapshotLayout ?? SNAPSHOT_LAYOUT;
    this.decoded = new DecodedSnapshots(options.decodedMaxChars ?? 2_000_000);
    this.channel = this.redis.keys.global('cache:invalidate');
  }

  /**
   * One GET, one round trip. The TTL is refreshed (`ttlRefresh-1.lua`, sent after the reply
   * and not waited for) only when it may have run below half: every store sets the full TTL, and a
   * snapshot is stored after the write that set its `updatedAt`, so a snapshot updated less
   * than half the TTL ago still has more than half of it left (PostgreSQL's clock against
   * this instance's: a skew only moves the refresh). A snapshot read at t thus stays at least
   * until t + TTL/2, at most a TTL after its last store or refresh.
   */
  get(id: string): Promise<Session | null> {
    const key = this.redis.keys.session(id);
    return this.redis.run(
      (r) => r.get(key),
      'read',
      (raw) => {
        const { session, legacy } = this.decoded.decode(key, raw);
        if (legacy) return this.retire(id).then(() => this.count(null));
        if (session) this.refreshIfDue(key, session);
        return this.count(session);
      },
      this.countError,
    );
  }

  /**
   * Several snapshots in one round trip: the GET calls are issued together and node-redis
   * pipelines them on one connection (on a Cluster, one pipeline per node).
   */
  async getMany(ids: readonly string[]): Promise<Map<string, Session>> {
    const keys = ids.map((id) => this.redis.keys.session(id));
    const raws = await this.guarded('read', (r) => Promise.all(keys.map((key) => r.get(key))));
    const found = new Map<string, Session>();
    const decoded = raws.map((raw, i) => this.decoded.decode(keys[i] as string, raw));
    await Promise.all(ids.map((id, i) => (decoded[i]?.legacy ? this.retire(id) : undefined)));
    decoded.forEach(({ session }, i) => {
      const s = this.count(session);
      if (!s) return;
      this.refreshIfDue(keys[i] as string, s);
      found.set(keyOf(s), s);
    });
    return found;
  }

  /**
   * Slides the TTL when the snapshot's key may have less than half of it left (see `get`):
   * `ttlRefresh-1.lua` sets it only if the key still holds this version's data and its TTL
   * is below half, so a marker stored since the read keeps its short lifetime.
   */
  private refreshIfDue(key: string, session: Session): void {
    // Timestamps are ISO 8601 in UTC, which order as text: no parse per read.
    if (session.updatedAt >= this.refreshBefore()) return;
    // Not waited for: the read has its answer. A failure is counted like any other call.
    const args = [String(session.version), String(this.ttlMs), String(Math.floor(this.ttlMs / 2))];
    void this.redis.run((r) => SCRIPTS.ttlRefresh.run(r, [key], args)).catch(() => {
      this.errors++;
    });
  }

  /**
   * Snapshots updated before this instant (ISO 8601) may have less than half their TTL left.
   * Recomputed at most once a second, a second early, so it is never late.
   */
  private refreshBefore(): string {
    const now = Date.now();
    if (now - this.thresholdAt >= 1_000) {
      this.thresholdAt = now;
      this.threshold = new Date(now + 1_000 - this.ttlMs / 2).toISOString();
    }
    return this.threshold;
  }

  /**
   * A snapshot from before the revision (issue 11) reads as a miss, and the refill cannot
   * replace it (same version). Its lifetime drops to a marker's, so reads go to PostgreSQL
   * for at most that long rather than for as long as the read-slid TTL lasts. A newer
   * snapshot stored meanwhile merely expires sooner.
   */
  private async retire(id: string): Promise<void> {
    await this.guarded('write', (r) => r.pExpire(this.redis.keys.session(id), Math.min(this.tombstoneTtlMs, this.ttlMs)));
  }

  async set(session: Session): Promise<void> {
    await this.store(session);
  }

  /**
   * Stores the snapshot unless a newer one is there; resolves to the version Redis holds
   * afterwards (greater than the snapshot's when it was kept). `created`: the first version
   * of a session just inserted. It publishes no invalidation (no instance holds an older
   * version), and where the key holds nothing, the usual case, it is one `SET NX PX`: a plain
   * command takes Redis about half the time of the script (docs/distributed.md, "Benchmark").
   * Only a key that holds something (a reused id's delete marker) goes through the script.
   */
  store(session: Session, options: { created?: boolean } = {}): Promise<number> {
    const id = keyOf(session);
    const body = encodeSnapshot(session, this.layout);
    if (options.created !== true) return this.casSet(id, session.version, body, true);
    return this.redis.run(
      (r) => r.set(this.redis.keys.session(id), `${session.version}:${body}`, { condition: 'NX', expiration: { type: 'PX', value: this.ttlMs } }),
      'write',
      (reply) => (reply === null ? this.casSet(id, session.version, body, false) : session.version),
      this.countError,
    );
  }

  /** casSet-1.lua: stores unless a newer version is there; resolves to the version held afterwards. */
  private async casSet(id: string, version: number, body: string, announce: boolean): Promise<number> {
    const stored = await this.guarded('write', (r) =>
      SCRIPTS.casSet.run(
        r,
        [this.redis.keys.session(id)],
        [String(version), body, String(this.ttlMs), announce ? this.channel : '', announce ? message(id, version) : ''],
      ),
    );
    return Number(stored);
  }

  /**
   * Writes a marker that holds no data but keeps anything older than `version` out; readers
   * see a miss and refill from PostgreSQL. Used for deletes and for repairs after an outage.
   */
  mark(id: string, version: number): Promise<number> {
    return this.writeMarker(id, version, (fn) => this.guarded('write', fn));
  }

  /** Same as `mark`, bypassing the breaker: the breaker's own recovery uses it. */
  markUnguarded(id: string, version: number): Promise<number> {
    return this.writeMarker(id, version, (fn) => this.redis.runUnguarded(fn));
  }

  private async writeMarker(
    id: string,
    version: number,
    run: (fn: (redis: RedisClientType) => Promise<unknown>) => Promise<unknown>,
  ): Promise<number> {
    const ttl = version === TOMBSTONE_VERSION ? this.tombstoneTtlMs : Math.min(this.tombstoneTtlMs, this.ttlMs);
    const stored = await run((r) =>
      SCRIPTS.casSet.run(r, [this.redis.keys.session(id)], [String(version), '', String(ttl), this.channel, message(id, version)]),
    );
    return Number(stored);
  }

  async invalidate(id: string): Promise<void> {
    await this.mark(id, TOMBSTONE_VERSION);
  }

  forget(id?: string): void {
    if (id === undefined) this.decoded.clear();
    else this.decoded.forget(this.redis.keys.session(id));
  }

  stats(): CacheStats & { errors: number } {
    // The number of keys is Redis's business (INFO keyspace); this tier reports traffic.
    return { hits: this.hits, misses: this.misses, size: 0, errors: this.errors };
  }

  private count(session: Session | null): Session | null {
    if (session) this.hits++;
    else this.misses++;
    return session;
  }

  private async guarded<T>(kind: CallKind, fn: (redis: RedisClientType) => Promise<T>): Promise<T> {
    try {
      return await this.redis.run(fn, kind);
    } catch (err) {
      this.errors++;
      throw err;
    }
  }
}

const message = formatInvalidation;

