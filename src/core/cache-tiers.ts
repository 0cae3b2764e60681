/**
 * The parts the cache coherence policy (cache-coherence.ts) is made of, as narrow ports: an
 * in-process near tier, a shared tier (Redis) with its health, a log of writes the shared
 * tier missed (PostgreSQL), and the invalidation bus (invalidation.ts). Adapters implement
 * them; the policy sees no client library.
 */
import type { CacheStats } from './ports.js';
import type { Session } from './types.js';

/**
 * The version of a delete marker: nothing can be stored over it until it expires. 2^52: far
 * above any real version, and exact through Lua and the RESP integer decoder (2^53 - 1 comes
 * back rounded).
 */
export const TOMBSTONE_VERSION = 2 ** 52;

/** A near-cache entry as `find` hands it out: valid only until the next call that changes the cache. */
export interface NearEntry {
  /** The session's key (`sessionKey`). */
  readonly key: string;
}

/**
 * This instance's in-memory copies, versioned: an entry is never replaced by an older
 * version, and markers (entries without data) keep older versions out for a while.
 */
export interface NearCache {
  /** The tier's name in statistics. */
  readonly tier: string;
  /** Whether a live entry is present, counting neither a hit nor a miss. */
  peek(id: string): boolean;
  /** The live entry, counted as a hit, or null, counted as a miss. */
  getSync(id: string): Session | null;
  /**
   * `peek` by tenant and id, without building the key: the live entry, counting neither a
   * hit nor a miss, to be read with `hit`.
   */
  find(tenant: string, id: string): NearEntry | null;
  /**
   * The session of an entry `find` returned, if it is still the live one (counted as a hit);
   * otherwise `getSync` of its key. Its expiry is not checked again: `find` did.
   */
  hit(entry: NearEntry): Session | null;
  /** Counts a lookup answered elsewhere without asking (the caller peeked and found nothing). */
  countMiss(): void;
  /** Stores the snapshot unless a live entry holds its version or a newer one. */
  set(session: Session): void;
  /** Another instance wrote `version`: drops an older entry, leaving a marker just below it. */
  forgetOlderThan(id: string, version: number): void;
  /** Replaces the entry with a delete marker. */
  invalidate(id: string): void;
  /** The ids and versions of the live entries that hold a snapshot (markers left out). */
  entryVersions(): Array<[id: string, version: number]>;
  clear(): void;
  stats(): CacheStats;
}

/**
 * The cache every instance shares. Snapshots are versioned and a store never replaces a
 * newer version with an older one; every change is announced on the invalidation bus by the
 * shared tier itself, in the same step. Every call fails (rather than waits) while the tier
 * is unreachable.
 */
export interface SharedCache {
  readonly tier: string;
  get(id: string): Promise<Session | null>;
  /** The snapshots among `ids` (misses left out), fetched together. */
  getMany(ids: readonly string[]): Promise<Map<string, Session>>;
  /**
   * Stores unless a newer version is there; resolves to the version held afterwards. The
   * store tells every instance (the invalidation), unless `created`: the first version of a
   * session just inserted, of which no instance holds an older version (the tier may then
   * store it without a comparison where it holds nothing for the id).
   */
  store(session: Session, options?: { created?: boolean }): Promise<number>;
  /**
   * Writes a marker: no data, but nothing older than `version` may be stored over it, and
   * readers miss. Resolves to the version held afterwards.
   */
  mark(id: string, version: number): Promise<number>;
  /** `mark`, bypassing the breaker: the breaker's own recovery uses it. */
  markUnguarded(id: string, version: number): Promise<number>;
  /** A delete marker (TOMBSTONE_VERSION). */
  invalidate(id: string): Promise<void>;
  /**
   * Drops what this instance keeps in memory from reading `id` (the Redis tier's decoded
   * snapshots), or from every session without an id: called when a write or delete of the
   * session is announced, and when announcements may have been missed.
   */
  forget?(id?: string): void;
  stats(): CacheStats;
}

/** The per-instance circuit breaker in front of the shared tier. */
export interface SharedCacheBreaker {
  /** Reads may go to the shared tier only while it is closed. */
  readonly isClosed: boolean;
  /** Opens at once: every call fails fast until a recovery succeeds. */
  trip(cause?: unknown): void;
  /** Tries to close (server checks, then recovery tasks); resolves to whether it is closed. */
  recover(): Promise<boolean>;
}

/** The shared tier's connection as the policy sees it: its breaker and its server. */
export interface SharedCacheHealth {
  readonly breaker: SharedCacheBreaker;
  /** The part of the server this instance's keys live in (the key prefix). */
  readonly keyspace: string;
  /**
   * Runs before any call goes to a server this instance (re)connected to, while every call
   * still fails fast; a failure keeps the breaker open.
   */
  onServerCheck(check: () => Promise<void>): void;
  /** Runs after the server checks, while writes go through but reads do not yet. */
  onRecovery(task: () => Promise<void>): void;
  /** Names the server(s) behind the connection; a restart or a failover changes it. */
  serverIdentity(): Promise<string>;
  /** Deletes every key of the keyspace, around the breaker (recovery calls it). */
  clearKeyspace(): Promise<unknown>;
}

export interface CacheRepair {
  /** The session's key (`sessionKey`, core/ids.ts). */
  sessionId: string;
  version: number;
}

/** Writes the shared tier missed, kept in the source of truth until the tier holds them. */
export interface CacheRepairLog {
  /**
   * Records a repair and announces it to every instance (`onRecorded`); resolves once it is
   * durable.
   */
  record(key: string, version: number): Promise<void>;
  /**
   * Hands every recorded repair to `repair` in batches, deleting each batch it finished. A
   * drain waits for one already in progress elsewhere.
   */
  drain(repair: (batch: CacheRepair[]) => Promise<void>): Promise<number>;
  /** Announced repairs (null: something was recorded, unknown what); resolves to unsubscribe. */
  onRecorded(listener: (repair: CacheRepair | null) => void): Promise<() => Promise<void>>;
  /**
   * Unless `identity` is the server recorded for `keyspace`, calls `clear` and records it,
   * holding out concurrent callers meanwhile. Resolves to whether it cleared.
   */
  verifyServer(keyspace: string, identity: string, clear: () => Promise<void>): Promise<boolean>;
}

/** The shared tier with what keeps it honest. */
export interface SharedTier {
  cache: SharedCache;
  health: SharedCacheHealth;
  repairs: CacheRepairLog;
}
