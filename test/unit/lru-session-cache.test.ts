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

  it('keeps the exact order of a reference model through random puts, reads, markers and clears (the eviction walks one kept iterator)', async () => {
    for (let seed = 1; seed <= 30; seed++) {
      let state = seed;
      const random = (n: number) => {
        state = (state * 1_103_515_245 + 12_345) % 2_147_483_648;
        return state % n;
      };
      const max = 4 + random(12);
      const cache = new LruSessionCache({ maxEntries: max, now: () => 0 });
      // The reference: keys oldest first; each key's version (a marker's is the largest), placement and whether it holds a session.
      const order: string[] = [];
      const entries = new Map<string, { version: number; placed: number; session: boolean }>();
      let placements = 0;
      let nextVersion = 1;
      const place = (key: string, version: number, session: boolean) => {
        const at = order.indexOf(key);
        if (at >= 0) order.splice(at, 1);
        order.push(key);
        entries.set(key, { version, placed: ++placements, session });
        while (order.length > max) entries.delete(order.shift() as string);
      };
      for (let step = 0; step < 500; step++) {
        const id = `s${random(3 * max)}`;
        const key = `default/${id}`;
        const current = entries.get(key);
        const op = random(10);
        if (op < 5) {
          const version = nextVersion++;
          await cache.set(sessionSnapshot(id, version));
          if (!current || current.version < version) place(key, version, true);
        } else if (op < 8) {
          const found = cache.getSync(key);
          expect(found?.id ?? null, `seed ${seed} step ${step}: read ${key}`).toBe(current?.session ? id : null);
          if (current?.session && placements - current.placed >= max >> 2) place(key, current.version, true);
        } else if (op < 9) {
          await cache.invalidate(key);
          place(key, Number.MAX_SAFE_INTEGER, false);
        } else if (random(4) === 0) {
          cache.clear();
          order.length = 0;
          entries.clear();
        }
        const expected = order.filter((k) => entries.get(k)?.session);
        expect(cache.entryVersions().map(([k]) => k), `seed ${seed} step ${step}`).toEqual(expected);
      }
    }
  });
});
