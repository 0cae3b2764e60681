/**
 * PostgresRunRepository on PGlite and PostgreSQL: a decision made on a snapshot is applied
 * only if the rows it read are unchanged (sql/run-apply.sql checks them under lock), and when
 * they changed, it is made again on the locked rows. Another writer is slipped in between the
 * snapshot and the apply, deterministically.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresRunRepository } from '../../src/adapters/postgres/run-repository.js';
import type { SqlDatabase } from '../../src/adapters/postgres/database.js';
import { run, statements } from '../../src/adapters/postgres/sql.js';
import { uuidv7 } from '../../src/core/ids.js';
import type { FinalizeRequest, StartRunRequest } from '../../src/core/runs.js';
import { internals, type Sessions } from '../../src/internal.js';
import { MODES, modeReady } from './support.js';

const SQL = statements('runApply');

/** `db`, with `before` run ahead of each statement outside a transaction (the snapshot reads and optimistic applies). */
function interfering(db: SqlDatabase, before: (text: string) => Promise<void>): SqlDatabase {
  return new Proxy(db, {
    get(target, prop) {
      if (prop === 'query') {
        return async (text: string, params?: readonly unknown[]) => {
          await before(text);
          return target.query(text, params);
        };
      }
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

/** Runs `write` once, just before the first optimistic run-apply. */
function beforeFirstApply(write: () => Promise<void>): (text: string) => Promise<void> {
  let done = false;
  return async (text) => {
    if (done || !text.startsWith('-- run-apply:')) return;
    done = true;
    await write();
  };
}

for (const mode of MODES.filter((m) => m.name === 'embedded' || m.name === 'postgres')) {
  const ready = modeReady(mode, `runs/repository/${mode.name}`);
  describe.skipIf(!ready)(`runs/repository/${mode.name}`, () => {
    let storage: Awaited<ReturnType<typeof mode.prepare>>;
    let sessions: Sessions;
    let db: SqlDatabase;
    let plain: PostgresRunRepository;

    beforeAll(async () => {
      storage = await mode.prepare();
      sessions = await storage.open();
      db = internals(sessions).db;
      plain = new PostgresRunRepository(db);
    });

    afterAll(async () => {
      await sessions?.close();
      await storage?.dispose();
    });

    const startRequest = (sessionId: string, ifBusy: StartRunRequest['ifBusy'] = 'reject'): StartRunRequest => ({
      tenant: 'default',
      sessionId,
      runId: uuidv7(),
      owner: 'ghost',
      input: { n: 1 },
      leaseMs: 60_000,
      ifBusy,
      maxQueued: 10,
    });

    const finalizeRequest = (sessionId: string, runId: string): FinalizeRequest => ({
      tenant: 'default',
      sessionId,
      runId,
      owner: 'ghost',
      status: 'completed',
      reason: 'completed',
      error: null,
      sessionStatus: 'idle',
      leaseMs: 60_000,
    });

    const outbox = (sessionId: string) =>
      db.query<{ type: string }>('SELECT type FROM outbox WHERE session_id = $1 ORDER BY id', [sessionId]).then((r) => r.map((e) => e.type));

    it('an append answers each batch with the events as the archive holds them (seqs, created_at), busy and not-running apart', async () => {
      const [a, b, idle] = await Promise.all([sessions.create(), sessions.create(), sessions.create()]);
      const runA = (await plain.start(startRequest(a.id))).run.id;
      const runB = (await plain.start(startRequest(b.id))).run.id;
      const batches = [
        { tenant: 'default', sessionId: a.id, runId: runA, events: [{ type: 'text', data: { text: 'x', n: 1 } }, { type: 'text', data: 'y', json: '"y"' }] },
        { tenant: 'default', sessionId: b.id, runId: runB, events: [{ type: 'tool_call', data: [1, { k: null }] }] },
        { tenant: 'default', sessionId: idle.id, runId: uuidv7(), events: [{ type: 'text', data: 'nobody runs here' }] },
      ];
      for (const wait of [true, false]) {
        const outcomes = await plain.appendOutput(batches, { wait });
        expect(outcomes[2]).toBeNull();
        for (const [i, batch] of batches.slice(0, 2).entries()) {
          const stored = outcomes[i];
          if (!Array.isArray(stored)) throw new Error(`batch ${i}: ${String(stored)}`);
          const after = (stored[0]?.seq ?? 0) - 1;
          expect(await plain.readOutput('default', batch.sessionId, after, 100)).toEqual(stored);
          expect(stored.map((e) => e.data)).toEqual(batch.events.map((e) => e.data));
        }
      }
      // A session another transaction holds (PGlite has one connection: no other transaction): the
      // group statement says busy and writes nothing of that batch.
      if (mode.name !== 'postgres') return;
      const before = await plain.readOutput('default', a.id, 0, 100);
      await db.transaction(async (tx) => {
        await tx.query('SELECT 1 FROM sessions WHERE id = $1 FOR UPDATE', [a.id]);
        const outcomes = await plain.appendOutput(batches.slice(0, 2), { wait: false });
        expect(outcomes[0]).toBe('busy');
        expect(Array.isArray(outcomes[1])).toBe(true);
      });
      expect(await plain.readOutput('default', a.id, 0, 100)).toEqual(before);
    });

    it('writes nothing for a plan whose snapshot no longer matches the locked rows', async () => {
      const s = await sessions.create();
      const [row] = await db.query<{ version: number; status: string }>('SELECT version, status FROM sessions WHERE id = $1', [s.id]);
      const runId = uuidv7();
      const plan = (version: number) =>
        JSON.stringify({
          expect: [{ status: row?.status, version, output_seq: 0, running_run_id: null, queued_runs: 0, live: true, runs: [] }],
          session: [{ output_seq: 1, running_run_id: runId, queued_runs: 0, status: 'active' }],
          stop: [],
          start: [],
          insert: [{ id: runId, status: 'running', owner: 'ghost', input: null, start_seq: 1, lease_ms: 60_000 }],
          output: [{ seq: 1, run_id: runId, type: 'status', data: { state: 'running', run_id: runId } }],
          outbox: [{ type: 'run.started', payload: { run_id: runId } }],
        });
      const [stale] = await run(db, SQL.runApply, { session: s.id, tenant: 'default', plan: plan(Number(row?.version) + 1) });
      expect(stale).toMatchObject({ applied: false, session: null, runs: [], events: [] });
      expect(await db.query('SELECT 1 FROM runs WHERE session_id = $1', [s.id])).toEqual([]);
      expect(await outbox(s.id)).toEqual(['session.created']);
      const [fresh] = await run(db, SQL.runApply, { session: s.id, tenant: 'default', plan: plan(Number(row?.version)) });
      expect(fresh).toMatchObject({ applied: true, events: [{ seq: 1, type: 'status' }] });
      expect(await outbox(s.id)).toEqual(['session.created', 'run.started']);
    });

    it('starts on the locked rows when the session was written after the snapshot', async () => {
      const s = await sessions.create();
      const repo = new PostgresRunRepository(
        interfering(db, beforeFirstApply(async () => void (await db.query('UPDATE sessions SET version = version + 1 WHERE id = $1', [s.id])))),
      );
      const started = await repo.start(startRequest(s.id));
      expect(started.run.status).toBe('running');
      // Created at 1, bumped to 2 in between, 3 once active: the write built on the newest row.
      expect(started.session).toMatchObject({ status: 'active', version: 3 });
      expect(started.events.map((e) => e.seq)).toEqual([1]);
      expect(await outbox(s.id)).toEqual(['session.created', 'session.status_changed', 'run.started']);
      const [changed] = await db.query<{ payload: unknown }>(
        `SELECT payload FROM outbox WHERE session_id = $1 AND type = 'session.status_changed'`,
        [s.id],
      );
      expect(changed?.payload).toMatchObject({ to: 'active', version: 3 });
    });

    it('refuses or queues a start when another run started between the snapshot and the apply', async () => {
      for (const ifBusy of ['reject', 'enqueue', 'interrupt'] as const) {
        const s = await sessions.create();
        let rival = '';
        const repo = new PostgresRunRepository(
          interfering(db, beforeFirstApply(async () => void (rival = (await plain.start(startRequest(s.id))).run.id))),
        );
        const attempt = repo.start(startRequest(s.id, ifBusy));
        if (ifBusy === 'reject') {
          const refused: unknown = await attempt.catch((err: unknown) => err);
          expect(refused).toMatchObject({ code: 'session_busy', details: { runId: rival } });
          continue;
        }
        const queued = await attempt;
        expect(queued.run.status).toBe('queued');
        expect(queued.interrupted.map((r) => r.id)).toEqual(ifBusy === 'interrupt' ? [rival] : []);
        const [counts] = await db.query<{ running_run_id: string; queued_runs: number }>(
          'SELECT running_run_id, queued_runs FROM sessions WHERE id = $1',
          [s.id],
        );
        expect(counts).toEqual({ running_run_id: rival, queued_runs: 1 });
      }
    });

    it('promotes a run queued between the snapshot and the apply of a finalization', async () => {
      const s = await sessions.create();
      const first = await plain.start(startRequest(s.id));
      let queuedId = '';
      const repo = new PostgresRunRepository(
        interfering(db, beforeFirstApply(async () => void (queuedId = (await plain.start(startRequest(s.id, 'enqueue'))).run.id))),
      );
      const ended = await repo.finalize(finalizeRequest(s.id, first.run.id));
      expect(ended?.run).toMatchObject({ id: first.run.id, status: 'completed', endSeq: 2 });
      expect(ended?.promoted).toMatchObject({ id: queuedId, status: 'running', startSeq: 3 });
      // Still active: the promoted run runs.
      expect(ended?.session).toBeNull();
      expect(ended?.events.map((e) => [e.seq, e.type])).toEqual([
        [2, 'done'],
        [3, 'status'],
      ]);
      // Finalized by its owner through the snapshot, with nothing in between: idle again.
      const last = await plain.finalize(finalizeRequest(s.id, queuedId));
      expect(last?.session).toMatchObject({ status: 'idle' });
      expect(await plain.finalize(finalizeRequest(s.id, queuedId))).toBeNull();
    });
  });
}
