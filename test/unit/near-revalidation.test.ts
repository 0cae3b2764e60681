/**
 * The near cache's check of its entries against the committed versions (CoherentSessionCache
 * `revalidate`, PostgreSQL-only mode): the path that catches a write whose invalidation was
 * never sent. Over an in-memory "database" of versions; no service, no real time.
 */
import { describe, expect, it } from 'vitest';
import { CoherentSessionCache } from '../../src/core/cache-coherence.js';
import type { Clock } from '../../src/core/clock.js';
import type { InvalidationBus, InvalidationHandlers } from '../../src/core/invalidation.js';
import { LruSessionCache } from '../../src/adapters/memory/lru-session-cache.js';
import { snapshot } from './cache-coherence/fakes.js';

/** A bus that sends nothing and answers `committedVersions` from `rows`. */
class VersionBus implements InvalidationBus {
  readonly kind = 'versions';
  live = true;
  readonly asked: string[][] = [];
  constructor(readonly rows: Map<string, number>) {}
  async start(_handlers: InvalidationHandlers): Promise<void> {}
  async publish(): Promise<void> {}
  settle(): Promise<void> {
    return Promise.resolve();
  }
  async committedVersions(ids: readonly string[]): Promise<Map<string, number>> {
    this.asked.push([...ids]);
    return new Map(ids.flatMap((id) => (this.rows.has(id) ? [[id, this.rows.get(id) as number] as const] : [])));
  }
  async close(): Promise<void> {}
}

/** A clock whose timers never fire on their own: the test calls `revalidate` itself. */
const stillClock: Clock = { now: () => 0, after: () => () => undefined, every: () => () => undefined };

async function setup(rows: Array<[string, number]>) {
  const bus = new VersionBus(new Map(rows));
  const near = new LruSessionCache({ maxEntries: 5_000, ttlMs: 60_000, now: () => 0, tier: 'near' });
  const cache = new CoherentSessionCache({ near, bus, clock: stillClock });
  await cache.ready();
  return { bus, near, cache };
}

describe('near cache version check', () => {
  it('drops entries older than their row and entries whose row is gone; keeps current ones', async () => {
    const { bus, near, cache } = await setup([
      ['d/current', 3],
      ['d/behind', 5],
    ]);
    await cache.set(snapshot('d/current', 3), 'read');
    await cache.set(snapshot('d/behind', 4), 'read');
    await cache.set(snapshot('d/gone', 2), 'read');
    await cache.revalidate();
    expect(near.peek('d/current')).toBe(true);
    expect(near.peek('d/behind')).toBe(false);
    expect(near.peek('d/gone')).toBe(false);
    // An older snapshot still in flight (a read that raced the write) is refused afterwards.
    await cache.set(snapshot('d/behind', 4), 'read');
    expect(near.peek('d/behind')).toBe(false);
    await cache.set(snapshot('d/behind', 5), 'read');
    expect(await cache.get('d/behind')).toMatchObject({ version: 5 });
    expect(bus.asked).toHaveLength(1);
    await cache.close();
  });

  it('asks in statements of at most 1,000 sessions, and not at all while the bus is not live', async () => {
    const { bus, cache } = await setup([]);
    for (let i = 0; i < 2_500; i++) await cache.set(snapshot(`d/s${i}`, 1), 'read');
    bus.live = false;
    await cache.revalidate();
    expect(bus.asked).toHaveLength(0);
    bus.live = true;
    await cache.revalidate();
    expect(bus.asked.map((a) => a.length)).toEqual([1_000, 1_000, 500]);
    await cache.close();
  });
});
