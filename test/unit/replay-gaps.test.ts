/**
 * The readers' gap logic on fakes: the output reader announces pruned seqs it finds at the
 * start or in the middle of a read (a live hole the archive no longer fills), and the event
 * feed announces ids below the tenant's pruned horizon, once, before the rest.
 */
import { describe, expect, it } from 'vitest';
import { EventFeed } from '../../src/core/events.js';
import { readOutput } from '../../src/core/output-stream.js';
import type { EventEnvelope, EventLog, EventQuery } from '../../src/core/ports.js';
import type { OutputEvent, OutputLog, RunRepository } from '../../src/core/runs.js';

function ev(seq: number, type = 'text', runId = 'r'): OutputEvent {
  return { seq, runId, type, data: null, createdAt: '2026-01-01T00:00:00.000Z' };
}

/**
 * An archive holding `archived` (anything else pruned) and a live log that serves `live` once;
 * with `live`, the archive's first read finds nothing yet (the reader goes live at once).
 */
function fakes(archived: OutputEvent[], live: OutputEvent[] = []): { repository: RunRepository; log: OutputLog } {
  let served = false;
  let reads = 0;
  const repository = {
    readOutput: async (_t: string, _s: string, after: number, limit: number) =>
      live.length > 0 && reads++ === 0 ? [] : archived.filter((e) => e.seq > after).slice(0, limit),
  } as unknown as RunRepository;
  const log = {
    name: 'fake',
    read: async (_key: string, after: number) => {
      if (served) return [];
      served = true;
      return live.filter((e) => e.seq > after);
    },
  } as unknown as OutputLog;
  return { repository, log };
}

async function all(after: number, archived: OutputEvent[], live: OutputEvent[] = []): Promise<OutputEvent[]> {
  const { repository, log } = fakes(archived, live);
  const out: OutputEvent[] = [];
  for await (const e of readOutput({ repository, live: log, tenant: 't', sessionId: 's', after, pollMs: 1 })) out.push(e);
  return out;
}

describe('output reader gaps', () => {
  it('announces the pruned seqs before the first retained event, with the seq of the last one missing', async () => {
    const events = await all(3, [ev(10, 'status', 'r2'), ev(11), ev(12, 'done')]);
    expect(events.map((e) => [e.seq, e.type])).toEqual([[9, 'gap'], [10, 'status'], [11, 'text'], [12, 'done']]);
    expect(events[0]).toMatchObject({ runId: 'r2', data: { from: 4, to: 9, reason: 'retention' } });
  });

  it('announces a hole between two retained runs too', async () => {
    const events = await all(0, [ev(1), ev(2, 'done'), ev(6, 'status'), ev(7, 'done')]);
    expect(events.map((e) => [e.seq, e.type])).toEqual([[1, 'text'], [2, 'done']]);
    const later = await all(2, [ev(1), ev(2, 'done'), ev(6, 'status'), ev(7, 'done')]);
    expect(later.map((e) => [e.seq, e.type])).toEqual([[5, 'gap'], [6, 'status'], [7, 'done']]);
    const inPage = await all(0, [ev(1), ev(4), ev(5, 'done')]);
    expect(inPage.map((e) => [e.seq, e.type])).toEqual([[1, 'text'], [3, 'gap'], [4, 'text'], [5, 'done']]);
  });

  it('no gap for a cursor at or after the oldest retained seq', async () => {
    expect((await all(9, [ev(10), ev(11, 'done')])).map((e) => e.type)).toEqual(['text', 'done']);
    expect((await all(10, [ev(10), ev(11, 'done')])).map((e) => e.type)).toEqual(['done']);
  });

  it('a hole in the live log that the archive no longer holds is a gap too', async () => {
    // Live: 1, then 5.. (2..4 pruned meanwhile); the reader goes to the archive on the hole.
    const events = await all(0, [ev(1), ev(5), ev(6, 'done')], [ev(1), ev(5)]);
    expect(events.map((e) => [e.seq, e.type])).toEqual([[1, 'text'], [4, 'gap'], [5, 'text'], [6, 'done']]);
  });
});

describe('event feed gaps', () => {
  function envelope(id: number): EventEnvelope {
    return { id, type: 'session.created', tenantId: 't', sessionId: 's', occurredAt: '2026-01-01T00:00:00.000Z', data: {} };
  }

  function log(rows: number[], prunedThrough: number): EventLog {
    return {
      horizon: async () => ({ horizon: 100, latest: 100 }),
      read: async (q: EventQuery) => ({
        events: rows.filter((id) => id > Math.max(q.after, prunedThrough) && id <= q.upTo).slice(0, q.limit).map(envelope),
        prunedThrough,
      }),
      onAppend: async () => async () => undefined,
    };
  }

  async function first(feed: EventFeed, after: number, n: number): Promise<EventEnvelope[]> {
    const out: EventEnvelope[] = [];
    for await (const e of feed.subscribe({ tenant: 't', after })) {
      out.push(e);
      if (out.length === n) break;
    }
    await feed.close();
    return out;
  }

  it('a cursor below the pruned horizon gets one gap (id = the horizon), then the retained events', async () => {
    const got = await first(new EventFeed(log([40, 41, 50], 40)), 7, 3);
    expect(got.map((e) => [e.id, e.type])).toEqual([[40, 'gap'], [41, 'session.created'], [50, 'session.created']]);
    expect(got[0]).toMatchObject({ tenantId: 't', sessionId: null, data: { from: 8, to: 40, reason: 'retention' } });
  });

  it('a cursor at or above the horizon gets none', async () => {
    expect((await first(new EventFeed(log([41, 50], 40)), 40, 2)).map((e) => e.type)).toEqual(['session.created', 'session.created']);
    expect((await first(new EventFeed(log([41, 50], 0)), 0, 2)).map((e) => e.id)).toEqual([41, 50]);
  });
});
