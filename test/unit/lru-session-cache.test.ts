/**
 * The in-process LRU (src/adapters/memory/lru-session-cache.ts): least recently used first out,
 * except that a read of an entry placed within the newest quarter of the cache does not move it
 * (the move was the largest cost of a near hit). What must hold either way: an entry read at
 * least once every 3/4 · maxEntries placements is never evicted, and entries nobody reads leave
 * oldest first.
 */
import { describe, expect, it } from 'vitest';
import { LruSessionCache } from '../../src/adapters/memory/lru-session-cache.js';
import { sessionSnapshot } from '../setup/sessions.js';

const session = (id: string) => sessionSnapshot(id, 1);

describe('LRU session cache', () => {
  it('evicts the entries nobody reads oldest first', async () => {
    const cache = new LruSessionCache({ maxEntries: 4, now: () => 0 });
    for (const id of ['a', 'b', 'c', 'd', 'e', 'f']) await cache.set(session(id));
    expect(cache.getSync('default/a')).toBeNull();
    expect(cache.getSync('default/b')).toBeNull();
    expect(['c', 'd', 'e', 'f'].map((id) => cache.getSync(`default/${id}`)?.id)).toEqual(['c', 'd', 'e', 'f']);
  });

  it('keeps an entry read once every 3/4 of the size in placements, through many times the size in new entries', async () => {
    const size = 100;
    const cache = new LruSessionCache({ maxEntries: size, now: () => 0 });
    await cache.set(session('kept'));
    for (let i = 0; i < 20 * size; i++) {
      await cache.set(session(`n${i}`));
      if (i % ((3 * size) / 4) === 0) expect(await cache.getFor('default', 'kept', (s) => s), `after ${i} new entries`).not.toBeNull();
    }
    expect(cache.stats().size).toBe(size);
  });

  it('moves a read entry that is older than the newest quarter, so the next eviction takes another', async () => {
    const cache = new LruSessionCache({ maxEntries: 8, now: () => 0 });
    for (const id of ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h']) await cache.set(session(id));
    expect(cache.getSync('default/a')?.id).toBe('a');
    await cache.set(session('i'));
    expect(cache.getSync('default/b')).toBeNull();
    expect(cache.getSync('default/a')?.id).toBe('a');
  });
});
