/**
 * In-process session cache: LRU with a maximum entry count and a TTL, version-aware (a set
 * never replaces a newer version), with tombstones so a purge is not undone by a read that
 * was already in flight. The whole cache in embedded mode; the near tier of the coherence
 * policy in distributed mode.
 */
import { keyOf } from '../../core/ids.js';
import type { NearCache } from '../../core/cache-tiers.js';
import type { CacheStats, SessionCache } from '../../core/ports.js';
import type { Session } from '../../core/types.js';

interface Entry {
  session: Session | null;
  version: number;
  expiresAt: number;
}

export interface LruSessionCacheOptions {
  maxEntries?: number;
  ttlMs?: number;
  now?: () => number;
  /** The tier name in statistics (default 'memory'; 'near' in front of a shared cache). */
  tier?: string;
}

export class LruSessionCache implements SessionCache, NearCache {
  readonly tier: string;
  private readonly entries = new Map<string, Entry>();
  private readonly maxEntries: number;
  private readonly ttlMs: number;
  private readonly now: () => number;
  private hits = 0;
  private misses = 0;

  constructor(options: LruSessionCacheOptions = {}) {
    this.maxEntries = options.maxEntries ?? 10_000;
    this.ttlMs = options.ttlMs ?? 60_000;
    this.now = options.now ?? Date.now;
    this.tier = options.tier ?? 'memory';
  }

  get(id: string): Promise<Session | null> {
    return Promise.resolve(this.getSync(id));
  }

  /** Whether a live entry is present, without counting a hit or a miss. */
  peek(id: string): boolean {
    const entry = this.entries.get(id);
    return entry !== undefined && entry.session !== null && entry.expiresAt > this.now();
  }

  /** Counts a lookup answered elsewhere without asking (the caller peeked and found nothing). */
  countMiss(): void {
    this.misses++;
  }

  getSync(id: string): Session | null {
    const entry = this.entries.get(id);
    if (!entry || entry.session === null || entry.expiresAt <= this.now()) {
      if (entry && entry.expiresAt <= this.now()) this.entries.delete(id);
      this.misses++;
      return null;
    }
    // Re-insert to mark as most recently used.
    this.entries.delete(id);
    this.entries.set(id, entry);
    this.hits++;
    return entry.session;
  }

  set(session: Session): Promise<void> {
    const key = keyOf(session);
    const current = this.entries.get(key);
    if (current && current.expiresAt > this.now() && current.version >= session.version) return Promise.resolve();
    this.entries.delete(key);
    this.entries.set(key, { session, version: session.version, expiresAt: this.now() + this.ttlMs });
    this.evict();
    return Promise.resolve();
  }

  invalidate(id: string): Promise<void> {
    this.entries.delete(id);
    this.entries.set(id, { session: null, version: Number.MAX_SAFE_INTEGER, expiresAt: this.now() + this.ttlMs });
    this.evict();
    return Promise.resolve();
  }

  /**
   * Another instance wrote `version`: drops an older entry and leaves a marker so that an
   * older snapshot still in flight to this cache is not stored after the drop.
   */
  forgetOlderThan(id: string, version: number): void {
    const current = this.entries.get(id);
    if (current && current.version >= version) return;
    if (!current) return;
    this.entries.delete(id);
    this.entries.set(id, { session: null, version: version - 1, expiresAt: this.now() + this.ttlMs });
    this.evict();
  }

  entryVersions(): Array<[id: string, version: number]> {
    const now = this.now();
    const out: Array<[string, number]> = [];
    for (const [id, entry] of this.entries) {
      if (entry.session !== null && entry.expiresAt > now) out.push([id, entry.version]);
    }
    return out;
  }

  clear(): void {
    this.entries.clear();
  }

  stats(): CacheStats {
    return { hits: this.hits, misses: this.misses, size: this.entries.size };
  }

  private evict(): void {
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next();
      if (oldest.done) return;
      this.entries.delete(oldest.value);
    }
  }
}
