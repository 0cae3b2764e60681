/**
 * Group commit (src/adapters/postgres/write-groups.ts) on its own: which calls share a
 * statement, how many statements run at once, and what each caller gets when a group's
 * statement fails. The statements are functions here; test/adapters/write-groups.test.ts runs
 * the real ones on PostgreSQL.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { describe, expect, it } from 'vitest';
import { UnavailableError, ValidationError } from '../../src/core/errors.js';
import { WriteGroups } from '../../src/adapters/postgres/write-groups.js';

interface Call {
  key: string;
  value: number;
}

/** A group whose statements record what they were given and resolve when told to. */
function recorder(options: { maxInFlight?: number; maxGroup?: number } = {}) {
  const ones: Call[] = [];
  const manys: Call[][] = [];
  const pending: Array<() => void> = [];
  let running = 0;
  let mostRunning = 0;
  const hold = async <T>(result: T): Promise<T> => {
    running++;
    mostRunning = Math.max(mostRunning, running);
    await new Promise<void>((resolve) => pending.push(resolve));
    running--;
    return result;
  };
  const groups = new WriteGroups<Call, string>({
    one: (c) => {
      ones.push(c);
      return hold(`one:${c.value}`);
    },
    many: (cs) => {
      manys.push([...cs]);
      return hold(cs.map((c) => `many:${c.value}`));
    },
    key: (c) => c.key,
    ...options,
  });
  /** Lets every statement running now finish, then lets the callers go on. */
  const release = async () => {
    await new Promise((r) => setImmediate(r));
    for (const resolve of pending.splice(0)) resolve();
    await new Promise((r) => setImmediate(r));
  };
  return { groups, ones, manys, release, mostRunning: () => mostRunning };
}

describe('write groups', () => {
  it('sends a call made alone by its single statement', async () => {
    const r = recorder();
    const done = r.groups.submit({ key: 'a', value: 1 });
    await r.release();
    expect(await done).toBe('one:1');
    expect(r.ones).toEqual([{ key: 'a', value: 1 }]);
    expect(r.manys).toEqual([]);
  });

  it('sends calls made together as one statement, each caller getting its own result', async () => {
    const r = recorder();
    const done = Promise.all([1, 2, 3, 4, 5].map((v) => r.groups.submit({ key: `k${v}`, value: v })));
    await r.release();
    expect(await done).toEqual(['many:1', 'many:2', 'many:3', 'many:4', 'many:5']);
    expect(r.manys.map((g) => g.map((c) => c.value))).toEqual([[1, 2, 3, 4, 5]]);
    expect(r.groups.stats).toEqual({ groups: 1, calls: 5 });
  });

  it('never puts two calls for the same key in one group, and keeps their order', async () => {
    const r = recorder();
    const done = Promise.all([
      r.groups.submit({ key: 'same', value: 1 }),
      r.groups.submit({ key: 'other', value: 2 }),
      r.groups.submit({ key: 'same', value: 3 }),
    ]);
    await r.release();
    await r.release();
    await done;
    expect(r.manys.map((g) => g.map((c) => c.value))).toEqual([[1, 2]]);
    expect(r.ones.map((c) => c.value)).toEqual([3]);
  });

  it('runs at most maxInFlight statements at once; calls arriving meanwhile wait and go together', async () => {
    const r = recorder({ maxInFlight: 2, maxGroup: 3 });
    const first = Array.from({ length: 6 }, (_, i) => r.groups.submit({ key: `a${i}`, value: i }));
    await new Promise((res) => setImmediate(res));
    // Two groups of three are running; these queue behind them.
    const later = Array.from({ length: 4 }, (_, i) => r.groups.submit({ key: `b${i}`, value: 10 + i }));
    await new Promise((res) => setImmediate(res));
    expect(r.manys.length).toBe(2);
    await r.release();
    await Promise.all(first);
    await r.release();
    await Promise.all(later);
    expect(r.mostRunning()).toBe(2);
    expect(r.manys.map((g) => g.map((c) => c.value))).toEqual([
      [0, 1, 2],
      [3, 4, 5],
      [10, 11, 12],
    ]);
    expect(r.ones.map((c) => c.value)).toEqual([13]);
  });

  it('when the database refused a value, runs every call of the group alone so each gets its own outcome', async () => {
    const ones: number[] = [];
    const groups = new WriteGroups<Call, string>({
      one: async (c) => {
        ones.push(c.value);
        if (c.value === 2) throw new ValidationError('a value was not acceptable to the database');
        return `one:${c.value}`;
      },
      many: async () => {
        throw new ValidationError('a value was not acceptable to the database');
      },
      key: (c) => c.key,
    });
    const outcomes = await Promise.allSettled([1, 2, 3].map((v) => groups.submit({ key: `k${v}`, value: v })));
    expect(outcomes.map((o) => (o.status === 'fulfilled' ? o.value : (o.reason as Error).name))).toEqual([
      'one:1',
      'ValidationError',
      'one:3',
    ]);
    expect(ones.sort()).toEqual([1, 2, 3]);
  });

  it('when the database is unavailable, fails every call of the group and retries none (the statement may have committed)', async () => {
    let ones = 0;
    const down = new UnavailableError('database unavailable');
    const groups = new WriteGroups<Call, string>({
      one: async () => {
        ones++;
        return 'one';
      },
      many: async () => {
        throw down;
      },
      key: (c) => c.key,
    });
    const outcomes = await Promise.allSettled([1, 2, 3].map((v) => groups.submit({ key: `k${v}`, value: v })));
    expect(outcomes.map((o) => (o.status === 'rejected' ? o.reason : null))).toEqual([down, down, down]);
    expect(ones).toBe(0);
  });

  it('runs a group in its first caller’s async context and a lone call in its own, never carrying one on to the next group', async () => {
    const als = new AsyncLocalStorage<string>();
    const seen: string[] = [];
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const groups = new WriteGroups<Call, string>({
      one: async () => {
        seen.push(`one:${als.getStore()}`);
        return 'one';
      },
      many: async (cs) => {
        seen.push(`many:${als.getStore()}`);
        if (cs[0]?.value === 1) await held;
        return cs.map(() => 'many');
      },
      key: (c) => c.key,
      maxInFlight: 1,
    });
    const first = ['a', 'b'].map((name, i) => als.run(name, () => groups.submit({ key: name, value: i + 1 })));
    await new Promise((r) => setImmediate(r));
    // Queued while the first group holds the only slot.
    const second = ['c', 'd'].map((name, i) => als.run(name, () => groups.submit({ key: name, value: i + 10 })));
    release();
    await Promise.all([...first, ...second]);
    const lone = als.run('f', () => groups.submit({ key: 'f', value: 20 }));
    await lone;
    expect(seen).toEqual(['many:a', 'many:c', 'one:f']);
  });
});
