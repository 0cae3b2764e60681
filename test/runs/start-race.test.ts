/**
 * Issue 16, race 2: concurrent starts on one session. One instance on PostgreSQL, four callers
 * starting one-word demo runs on the same session for a few seconds. Every start must be
 * decided on the locked, newest session row: a caller gets its run or `session_busy`
 * (reject), or its run running or queued (enqueue) — never `invalid_transition`, never a run
 * lost or counted twice.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSessions, internals, type Sessions } from '../../src/internal.js';
import { demoRunner } from '../../src/runners/demo.js';
import type { IfBusy, Run } from '../../src/core/runs.js';
import { freshDatabase, requireServices, type FreshDatabase } from '../setup/harness.js';
import { waitFor } from './support.js';

const CALLERS = 4;
const DURATION_MS = 4_000;
const INPUT = { text: '', words: 1, delay_ms: 0 };

interface Tally {
  outcomes: Map<string, number>;
  runs: Run[];
}

function codeOf(err: unknown): string {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' ? code : `unexpected: ${String(err)}`;
}

/** `CALLERS` loops starting runs on one session until the time is up; `each` runs after every start. */
async function hammer(sessions: Sessions, sessionId: string, ifBusy: IfBusy, each: (run: Run) => Promise<void>): Promise<Tally> {
  const tally: Tally = { outcomes: new Map(), runs: [] };
  const count = (outcome: string) => tally.outcomes.set(outcome, (tally.outcomes.get(outcome) ?? 0) + 1);
  const until = Date.now() + DURATION_MS;
  await Promise.all(
    Array.from({ length: CALLERS }, async () => {
      while (Date.now() < until) {
        let run: Run;
        try {
          run = await sessions.runs.start(sessionId, undefined, { input: INPUT, ifBusy });
        } catch (err) {
          count(codeOf(err));
          continue;
        }
        count(run.status);
        tally.runs.push(run);
        await each(run);
      }
    }),
  );
  return tally;
}

const ready = requireServices(['postgres'], 'runs/start-race');

describe.skipIf(!ready)('runs/start-race (one instance on PostgreSQL, four callers, one session)', () => {
  let db: FreshDatabase;
  let sessions: Sessions;

  beforeAll(async () => {
    db = await freshDatabase();
    sessions = await createSessions({
      env: { DATABASE_URL: db.url, RUN_SWEEP_INTERVAL_MS: '0' },
      agent: demoRunner({ wordDelayMs: 0, words: 1 }),
    });
  });

  afterAll(async () => {
    await sessions?.close();
    await db?.drop();
  });

  /** Every run of the session ended completed, and each has exactly one start and one terminal event. */
  async function expectEveryRunCompletedOnce(sessionId: string, started: Run[]): Promise<void> {
    await waitFor(async () => (await sessions.get(sessionId)).status === 'idle', 10_000, 'the session idle');
    const stored: Run[] = [];
    for (let cursor: string | undefined; ; ) {
      const page = await sessions.runs.list(sessionId, { cursor, limit: 100 });
      stored.push(...page.items);
      if (!page.nextCursor) break;
      cursor = page.nextCursor;
    }
    expect(stored.map((r) => r.id).sort()).toEqual(started.map((r) => r.id).sort());
    expect(stored.filter((r) => r.status !== 'completed')).toEqual([]);
    const events = await internals(sessions).db.query<{ seq: number; run_id: string; type: string; data: { state?: string } }>(
      'SELECT seq, run_id, type, data FROM run_output WHERE session_id = $1 ORDER BY seq',
      [sessionId],
    );
    expect(events.map((e) => Number(e.seq))).toEqual(events.map((_, i) => i + 1));
    for (const run of stored) {
      const own = events.filter((e) => e.run_id === run.id);
      expect(own.filter((e) => e.type === 'status' && e.data.state === 'running')).toHaveLength(1);
      expect(own.filter((e) => e.type === 'done')).toHaveLength(1);
    }
  }

  it('ifBusy reject: every start is started or session_busy, never invalid_transition', async () => {
    const session = await sessions.create();
    const tally = await hammer(sessions, session.id, 'reject', async () => undefined);
    console.log(`[reject] ${JSON.stringify(Object.fromEntries(tally.outcomes))}`);
    expect([...tally.outcomes.keys()].filter((k) => k !== 'running' && k !== 'session_busy')).toEqual([]);
    expect(tally.outcomes.get('running') ?? 0).toBeGreaterThan(0);
    await expectEveryRunCompletedOnce(session.id, tally.runs);
  });

  it('ifBusy enqueue: every start runs or queues and every run completes once, never invalid_transition', async () => {
    const session = await sessions.create();
    // A caller waits for its run (so at most four wait, under the queue cap), then thinks for
    // a random moment: callers that never pause keep the queue full, while the race needs the
    // session to fall idle often with other starts in flight.
    const tally = await hammer(sessions, session.id, 'enqueue', async (run) => {
      await sessions.runs.wait(session.id, run.id);
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 150));
    });
    console.log(`[enqueue] ${JSON.stringify(Object.fromEntries(tally.outcomes))}`);
    expect([...tally.outcomes.keys()].filter((k) => k !== 'running' && k !== 'queued')).toEqual([]);
    await expectEveryRunCompletedOnce(session.id, tally.runs);
  });
});
