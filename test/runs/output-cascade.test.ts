/**
 * A session's archived output goes with its row (migration 063: a trigger on sessions, not a
 * foreign key checked on every archived event). Every way a row goes is a DELETE on sessions,
 * so the statement-level trigger covers them all; here: a purge, a batch purge, and a DELETE
 * by hand of several rows in one statement; a TRUNCATE fires a trigger of its own. And a
 * purge racing its session's run, which keeps archiving until it finds its session gone,
 * leaves no event behind.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSessions, internals, type Sessions } from '../../src/internal.js';
import { freshDatabase, requireServices, type FreshDatabase } from '../setup/harness.js';

const backends = [
  { name: 'PostgreSQL', ready: () => requireServices(['postgres'], 'runs/output-cascade (PostgreSQL)') },
  // Embedded: the same migration on PGlite.
  { name: 'PGlite', ready: () => true },
] as const;

describe.each(backends)('runs/output-cascade ($name)', ({ name, ready }) => {
  let db: FreshDatabase | undefined;
  let sessions: Sessions;
  const skip = !ready();

  beforeAll(async () => {
    if (skip) return;
    if (name === 'PostgreSQL') db = await freshDatabase();
    sessions = await createSessions({ env: db ? { DATABASE_URL: db.url } : { DATA_DIR: ':memory:' } });
  });

  afterAll(async () => {
    await sessions?.close();
    await db?.drop();
  });

  async function archived(ids: readonly string[]): Promise<Map<string, number>> {
    const rows = await internals(sessions).db.query<{ session_id: string; n: number }>(
      `SELECT session_id, count(*)::int AS n FROM run_output WHERE tenant_id = 'default' AND session_id = ANY($1::text[]) GROUP BY session_id`,
      [ids],
    );
    return new Map(rows.map((r) => [r.session_id, r.n]));
  }

  /** A session with one finished run that archived `events` text events (and its end). */
  async function withOutput(events: number): Promise<string> {
    const s = await sessions.create({ title: 'output' });
    const run = await sessions.runs.start(s.id, async (r) => {
      for (let i = 0; i < events; i++) await r.emit({ type: 'text', data: { i } });
    });
    await sessions.runs.wait(s.id, run.id);
    return s.id;
  }

  it.skipIf(skip)('a purge, a batch purge and a DELETE of several rows by hand each remove the output of exactly the rows they remove', async () => {
    const [purged, batchA, batchB, byHandA, byHandB, kept] = await Promise.all(Array.from({ length: 6 }, () => withOutput(5)));
    const all = [purged, batchA, batchB, byHandA, byHandB, kept] as string[];
    const before = await archived(all);
    for (const id of all) expect(before.get(id)).toBeGreaterThanOrEqual(5);

    expect(await sessions.purge(purged as string)).toBe(true);
    expect((await sessions.deleteMany([batchA as string, batchB as string], { purge: true })).deleted.sort()).toEqual([batchA, batchB].sort());
    await internals(sessions).db.query(`DELETE FROM sessions WHERE tenant_id = 'default' AND id = ANY($1::text[])`, [[byHandA, byHandB]]);

    const after = await archived(all);
    expect([...after.keys()]).toEqual([kept]);
    expect(after.get(kept as string)).toBe(before.get(kept as string));
  });

  it.skipIf(skip)('a TRUNCATE of sessions empties the archive too, as the key’s CASCADE did', async () => {
    const ids = await Promise.all([withOutput(2), withOutput(2)]);
    expect((await archived(ids)).size).toBe(2);
    // Every table that names a session is emptied; no test here shares sessions with another.
    await internals(sessions).db.query('TRUNCATE sessions CASCADE');
    const [left] = await internals(sessions).db.query<{ n: number }>('SELECT count(*)::int AS n FROM run_output');
    expect(left?.n).toBe(0);
  });

  it.skipIf(skip)('a purge racing its session’s run leaves none of the run’s output behind', async () => {
    const ids = await Promise.all(
      Array.from({ length: 8 }, async () => {
        const s = await sessions.create({ title: 'racing' });
        const started = new Promise<void>((resolve) => {
          void sessions.runs.start(s.id, async (r) => {
            // Archives as fast as it can until it learns its session is gone (the emit fails).
            for (let i = 0; !r.signal.aborted; i++) {
              await r.emit({ type: 'text', data: { i } });
              if (i === 3) resolve();
            }
          });
        });
        await started;
        return s.id;
      }),
    );
    // Each purge lands between two of its run's archive statements, or waits for one to commit.
    expect(await Promise.all(ids.map((id) => sessions.purge(id)))).toEqual(ids.map(() => true));
    expect([...(await archived(ids)).entries()]).toEqual([]);
  });
});
