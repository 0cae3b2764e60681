/** UUIDv7 ids: valid, time-ordered, and strictly increasing within a process. */
import { describe, expect, it } from 'vitest';
import { isUuid, uuidv7 } from '../../src/core/ids.js';

const timestampOf = (id: string) => parseInt(id.replace(/-/g, '').slice(0, 12), 16);

describe('unit/ids', () => {
  it('makes version-7, variant-10 UUIDs carrying the time', () => {
    const id = uuidv7(Date.UTC(2026, 10, 21));
    expect(isUuid(id)).toBe(true);
    expect(id[14]).toBe('7');
    expect(['8', '9', 'a', 'b']).toContain(id[19]);
    expect(timestampOf(id)).toBeGreaterThanOrEqual(Date.UTC(2026, 10, 21));
  });

  it('orders ids made in the same millisecond by creation, even past the counter', () => {
    const at = Date.now() + 60_000;
    const ids = Array.from({ length: 10_000 }, () => uuidv7(at));
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(ids.length);
    // 10,000 ids cannot fit one millisecond's 4,096 counter values: later ones borrow ahead.
    expect(timestampOf(ids.at(-1) as string)).toBeGreaterThan(at);
  });

  it('stays increasing when the clock steps back', () => {
    const first = uuidv7(Date.now() + 120_000);
    const after = uuidv7(Date.now());
    expect(after > first).toBe(true);
  });
});
