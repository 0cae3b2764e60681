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
import type { AppendOutcome, FinalizeRequest, OutputEvent, StartRunRequest } from '../../src/core/runs.js';
import { internals, type Sessions } from '../../src/internal.js';
import { MODES, modeReady, waitFor } from './support.js';

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
      // Each run's events follow the ones it archived before (its writer counts them).
      const batches = (round: number) => [
        { tenant: 'default', sessionId: a.id, runId: runA, owner: 'ghost', offset: 2 * round, events: [{ type: 'text', data: { text: 'x', n: 1 } }, { type: 'text', data: 'y', json: '"y"' }] },
        { tenant: 'default', sessionId: b.id, runId: runB, owner: 'ghost', offset: round, events: [{ type: 'tool_call', data: [1, { k: null }] }] },
        { tenant: 'default', sessionId: idle.id, runId: uuidv7(), owner: 'ghost', offset: 0, events: [{ type: 'text', data: 'nobody runs here' }] },
      ];
      for (const [round, wait] of [true, false].entries()) {
        const outcomes = await plain.appendOutput(batches(round), { wait });
        expect(outcomes[2]).toBeNull();
        for (const [i, batch] of batches(round).slice(0, 2).entries()) {
          const stored = outcomes[i];
          if (!Array.isArray(stored)) throw new Error(`batch ${i}: ${String(stored)}`);
          // After the start event (seq 1) and the run's earlier batches.
          expect(stored.map((e) => e.seq)).toEqual(batch.events.map((_, j) => 2 + batch.offset + j));
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
        const outcomes = await plain.appendOutput(batches(2).slice(0, 2), { wait: false });
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

    /** Two text events of `runId`, the first it archives (its start event is seq 1): seqs 2 and 3. */
    const twoEvents = (sessionId: string, runId: string, owner = 'ghost') => [
      { tenant: 'default', sessionId, runId, owner, offset: 0, events: [{ type: 'text', data: 'a' }, { type: 'text', data: 'b' }] },
    ];

    /** A run's start event, the two events of `twoEvents`, then its end: the archive as [seq, type]. */
    const ENDED_AFTER_TWO_EVENTS = [
      [1, 'status'],
      [2, 'text'],
      [3, 'text'],
      [4, 'done'],
    ];

    /** The session's archived output as [seq, type]. */
    const archived = async (sessionId: string) => ((await plain.readOutput('default', sessionId, 0, 100)) ?? []).map((e) => [e.seq, e.type]);

    it('stores a batch sent again (its reply lost) once, at the same seqs, and none of another owner, alone or in a group', async () => {
      const s = await sessions.create();
      const first = await plain.start(startRequest(s.id));
      const seqs = (outcomes: AppendOutcome[]) => (outcomes[0] as OutputEvent[]).map((e) => e.seq);
      expect(seqs(await plain.appendOutput(twoEvents(s.id, first.run.id)))).toEqual([2, 3]);
      for (const wait of [true, false]) expect(seqs(await plain.appendOutput(twoEvents(s.id, first.run.id), { wait }))).toEqual([2, 3]);
      // Not from another owner's writer (the run's earlier owner, after it restarted elsewhere).
      for (const wait of [true, false]) expect(await plain.appendOutput(twoEvents(s.id, first.run.id, 'lost'), { wait })).toEqual([null]);
      expect(await archived(s.id)).toEqual(ENDED_AFTER_TWO_EVENTS.slice(0, 3));
    });

    it('ends a run on the locked rows when its output was appended between the snapshot and the apply', async () => {
      const s = await sessions.create();
      const first = await plain.start(startRequest(s.id));
      // Appends do not write the session row: the snapshot's last seq (1) is what changed.
      const repo = new PostgresRunRepository(interfering(db, beforeFirstApply(async () => void (await plain.appendOutput(twoEvents(s.id, first.run.id))))));
      const ended = await repo.finalize(finalizeRequest(s.id, first.run.id));
      expect(ended?.run).toMatchObject({ status: 'completed', endSeq: 4 });
      expect(ended?.events.map((e) => [e.seq, e.type])).toEqual([[4, 'done']]);
      expect(await archived(s.id)).toEqual(ENDED_AFTER_TWO_EVENTS);
    });

    it('ends a run on the locked rows when an append held the session row while the apply waited for it', async () => {
      // PGlite has one connection: no statement waits there for another transaction.
      if (mode.name !== 'postgres') return;
      const s = await sessions.create();
      const first = await plain.start(startRequest(s.id));
      let release = () => undefined as void;
      const released = new Promise<void>((resolve) => (release = resolve));
      let holding = () => undefined as void;
      const held = new Promise<void>((resolve) => (holding = resolve));
      // An append that has written its events and holds the row (FOR KEY SHARE), not yet committed.
      const appending = db.transaction(async (tx) => {
        const stored = await new PostgresRunRepository(tx as unknown as SqlDatabase).appendOutput(twoEvents(s.id, first.run.id));
        expect((stored[0] as Array<{ seq: number }>).map((e) => e.seq)).toEqual([2, 3]);
        holding();
        await released;
      });
      await held;
      // The snapshot does not see the append; its apply waits for the row, and then its terminal
      // event takes seq 2, which the append has: the archive's key refuses it, and the decision
      // is made again on the locked rows.
      const ending = plain.finalize(finalizeRequest(s.id, first.run.id));
      await waitFor(
        async () => {
          const [row] = await db.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '-- run-apply:%'`,
          );
          return (row?.n ?? 0) > 0;
        },
        10_000,
        'the finalization to wait for the session row',
      );
      release();
      await appending;
      const ended = await ending;
      expect(ended?.run).toMatchObject({ status: 'completed', endSeq: 4 });
      expect(await archived(s.id)).toEqual(ENDED_AFTER_TWO_EVENTS);
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
