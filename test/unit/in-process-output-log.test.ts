import { getEventListeners } from 'node:events';
import { describe, expect, it } from 'vitest';
import { InProcessOutputLog } from '../../src/core/in-process-output-log.js';
import type { OutputEvent } from '../../src/core/runs.js';

const event = (seq: number): OutputEvent => ({ seq, runId: 'r', type: 'text', data: seq, createdAt: '' });

describe('InProcessOutputLog', () => {
  it('answers the events after any cursor, in order, from a ring with holes and a head trimmed in steps', async () => {
    const log = new InProcessOutputLog({ maxEvents: 5 });
    await log.ready();
    // 1..7 with 4 missing, then an out-of-order 3 (dropped); below the trim step nothing goes.
    await log.publish('s', [1, 2, 3, 5, 6, 7].map(event));
    await log.publish('s', [event(3), event(8)]);
    const seqs = async (after: number) => (await log.read('s', after, { timeoutMs: 1 })).map((e) => e.seq);
    expect(await seqs(0)).toEqual([1, 2, 3, 5, 6, 7, 8]);
    expect(await seqs(3)).toEqual([5, 6, 7, 8]);
    expect(await seqs(4)).toEqual([5, 6, 7, 8]);
    expect(await seqs(7)).toEqual([8]);
    expect(await seqs(8)).toEqual([]);
    expect(await seqs(100)).toEqual([]);
    // 21 held (five plus the step of 16): trimmed to the last five.
    await log.publish('s', Array.from({ length: 13 }, (_, i) => event(9 + i)));
    expect(await seqs(0)).toEqual(Array.from({ length: 21 }, (_, i) => i + 1).filter((n) => n !== 4));
    await log.publish('s', [event(22)]);
    expect(await seqs(0)).toEqual([18, 19, 20, 21, 22]);
    expect(await seqs(19)).toEqual([20, 21, 22]);
    await log.close();
  });

  it('wakes a waiting reader with only the events after its cursor', async () => {
    const log = new InProcessOutputLog();
    await log.ready();
    await log.publish('s', [event(1), event(2)]);
    const waiting = log.read('s', 2, { timeoutMs: 10_000 });
    await log.publish('s', [event(3), event(4)]);
    expect((await waiting).map((e) => e.seq)).toEqual([3, 4]);
    await log.close();
  });

  it('holds one abort listener per reader signal however many waits it has; aborting ends every wait', async () => {
    const log = new InProcessOutputLog();
    await log.ready();
    const controller = new AbortController();
    const waits = ['a', 'b', 'c'].map((s) => log.read(s, 0, { timeoutMs: 10_000, signal: controller.signal }));
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(1);
    // A wait that ends (an event came) leaves the signal's one listener for the next wait.
    await log.publish('a', [event(1)]);
    expect((await waits[0])?.map((e) => e.seq)).toEqual([1]);
    const next = log.read('a', 1, { timeoutMs: 10_000, signal: controller.signal });
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(1);
    controller.abort();
    expect(await Promise.all([waits[1], waits[2], next])).toEqual([[], [], []]);
    await log.close();
  });

  it("gives readers a copy of the data as it was published: the publisher's object may change afterwards", async () => {
    const log = new InProcessOutputLog();
    await log.ready();
    const data = { text: 'first' };
    const waiting = log.read('s', 0, { timeoutMs: 10_000 });
    await log.publish('s', [{ seq: 1, runId: 'r', type: 'text', data, createdAt: '' }]);
    data.text = 'changed';
    expect((await waiting)[0]?.data).toEqual({ text: 'first' });
    expect((await log.read('s', 0, { timeoutMs: 1 }))[0]?.data).toEqual({ text: 'first' });
    await log.close();
  });

  it('keeps the published objects when told the data is already a copy (the Redis reader\'s buffer)', async () => {
    const log = new InProcessOutputLog({ copyData: false });
    await log.ready();
    const published = event(1);
    await log.publish('s', [published]);
    expect((await log.read('s', 0, { timeoutMs: 1 }))[0]).toBe(published);
    await log.close();
  });
});
