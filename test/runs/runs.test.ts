/**
 * Runs through the library API, in every mode: embedded (PGlite, in-process signals and
 * output), PostgreSQL only (LISTEN/NOTIFY) and PostgreSQL + Redis (pub/sub, Streams). In
 * the shared modes a second instance on the same storage plays "another server".
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OutputEvent, RunContext } from '../../src/core/runs.js';
import { PostgresRunRepository } from '../../src/adapters/postgres/run-repository.js';
import type { Sessions } from '../../src/internal.js';
import { collect, MODES, modeReady, waitFor } from './support.js';
import { internals, orphanedRunsTask } from '../../src/internal.js';

const LEASE = '900';

function seqsOf(events: OutputEvent[]): number[] {
  return events.map((e) => e.seq);
}

function expectContiguous(events: OutputEvent[], after: number): void {
  expect(seqsOf(events)).toEqual(events.map((_, i) => after + 1 + i));
}

/** A runner that emits `n` text events, then returns. */
const emitting = (n: number) => async (run: RunContext) => {
  for (let i = 0; i < n; i++) await run.emit({ type: 'text', data: { i } });
};

/** A runner that waits until interrupted and reports what it saw. */
const untilInterrupted = async (run: RunContext) => {
  await run.emit({ type: 'text', data: { text: 'working' } });
  await new Promise<void>((resolve) => {
    if (run.signal.aborted) resolve();
    run.signal.addEventListener('abort', () => resolve(), { once: true });
  });
  throw run.signal.reason;
};

for (const mode of MODES) {
  const ready = modeReady(mode, `runs/${mode.name}`);
  describe.skipIf(!ready)(`runs/${mode.name}`, () => {
    let storage: Awaited<ReturnType<typeof mode.prepare>>;
    let a: Sessions;
    let b: Sessions;

    beforeAll(async () => {
      storage = await mode.prepare();
      a = await storage.open({ RUN_LEASE_MS: LEASE, INSTANCE_ID: `a-${mode.name}` });
      b = mode.shared ? await storage.open({ RUN_LEASE_MS: LEASE, INSTANCE_ID: `b-${mode.name}` }) : a;
    });

    afterAll(async () => {
      if (b !== a) await b?.close();
      await a?.close();
      await storage?.dispose();
    });

    it('streams a run from start to its terminal event; the session goes active then idle', async () => {
      const session = await a.create();
      let seen: string | null = null;
      const run = await a.runs.start(session.id, async (r) => {
        seen = r.session.status;
        await emitting(5)(r);
      }, { input: { text: 'hi' } });
      expect(run.status).toBe('running');
      expect(run.input).toEqual({ text: 'hi' });
      const events = await collect(b.runs.stream(session.id));
      expect(events.map((e) => e.type)).toEqual(['status', 'text', 'text', 'text', 'text', 'text', 'done']);
      expectContiguous(events, (events[0]?.seq ?? 1) - 1);
      expect(events.at(-1)?.data).toMatchObject({ run_id: run.id, status: 'completed' });
      expect(seen).toBe('active');
      const ended = await b.runs.wait(session.id, run.id);
      expect(ended).toMatchObject({ status: 'completed', endReason: 'completed' });
      expect(ended.startSeq).toBe(events[0]?.seq);
      expect(ended.endSeq).toBe(events.at(-1)?.seq);
      // Another instance's near cache learns of the change when its invalidation arrives
      // (milliseconds; docs/distributed.md), not necessarily on the very next read.
      await waitFor(async () => (await b.get(session.id)).status === 'idle', 10_000, 'idle on the other instance');
      // The run's status changes moved the version, not the revision (the ETag a client holds).
      expect(await b.get(session.id)).toMatchObject({ revision: session.revision });
      expect((await b.get(session.id)).version).toBeGreaterThan(session.version);
      // A reader that joins after the end gets the replay and the terminal event.
      const replay = await collect(a.runs.stream(session.id));
      expect(replay).toEqual(events);
    });

    it('resumes from any seq with no gap and no duplicate, also across instances', async () => {
      const session = await a.create();
      const run = await a.runs.start(session.id, emitting(40));
      const first: OutputEvent[] = [];
      for await (const e of b.runs.stream(session.id)) {
        first.push(e);
        if (first.length === 7) break;
      }
      const rest = await collect(a.runs.stream(session.id, { after: first.at(-1)?.seq ?? 0 }));
      const all = [...first, ...rest];
      expect(all).toHaveLength(42);
      expectContiguous(all, (all[0]?.seq ?? 1) - 1);
      expect(all.at(-1)?.type).toBe('done');
      await a.runs.wait(session.id, run.id);
    });

    it('rejects a second run while one runs (session_busy), and queues with ifBusy enqueue', async () => {
      const session = await a.create();
      const order: string[] = [];
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      const first = await a.runs.start(session.id, async () => {
        order.push('first');
        await gate;
      });
      await expect(b.runs.start(session.id, emitting(1))).rejects.toMatchObject({ code: 'session_busy' });
      const second = await b.runs.start(session.id, async (r) => {
        order.push('second');
        await r.emit({ type: 'text', data: 'second' });
      }, { ifBusy: 'enqueue' });
      expect(second.status).toBe('queued');
      const third = await a.runs.start(session.id, async () => void order.push('third'), { ifBusy: 'enqueue' });
      expect(third.status).toBe('queued');
      release();
      const done = await b.runs.wait(session.id, third.id);
      expect(done.status).toBe('completed');
      expect(order).toEqual(['first', 'second', 'third']);
      expect((await a.runs.get(session.id, first.id)).status).toBe('completed');
      expect((await a.runs.get(session.id, second.id)).status).toBe('completed');
      const page = await a.runs.list(session.id);
      expect(page.items.map((r) => r.id)).toEqual([third.id, second.id, first.id]);
      // B saw the run end in the database; A's cache takes the finalized session right
      // after the commit (documented: visible on every instance within milliseconds).
      await waitFor(async () => (await a.get(session.id)).status === 'idle', 10_000, 'the session idle on A');
    });

    it('caps queued runs per session', async () => {
      const capped = await storage.open({ RUNS_QUEUED_PER_SESSION: '1', INSTANCE_ID: `cap-${mode.name}` });
      try {
        const session = await capped.create();
        let release!: () => void;
        const gate = new Promise<void>((r) => (release = r));
        await capped.runs.start(session.id, () => gate);
        await capped.runs.start(session.id, emitting(0), { ifBusy: 'enqueue' });
        await expect(capped.runs.start(session.id, emitting(0), { ifBusy: 'enqueue' })).rejects.toMatchObject({
          code: 'queue_full',
        });
        release();
      } finally {
        await capped.close();
      }
    });

    it('interrupts from another instance; the next run on the session is not interrupted', async () => {
      const session = await a.create();
      const run = await a.runs.start(session.id, untilInterrupted);
      const events: OutputEvent[] = [];
      const reading = (async () => {
        for await (const e of b.runs.stream(session.id)) events.push(e);
      })();
      await waitFor(() => events.some((e) => e.type === 'text'), 10_000, 'first output');
      const flagged = await b.runs.interrupt(session.id);
      expect(flagged.id).toBe(run.id);
      await reading;
      const terminal = events.at(-1);
      expect(terminal?.type).toBe('done');
      expect(terminal?.data).toMatchObject({ status: 'interrupted', reason: 'interrupted' });
      const ended = await a.runs.wait(session.id, run.id);
      expect(ended.status).toBe('interrupted');

      let aborted: boolean | null = null;
      const next = await a.runs.start(session.id, async (r) => {
        // Long enough for the owner's heartbeats (every LEASE / 3) to see a leftover flag too.
        await new Promise((res) => setTimeout(res, Number(LEASE)));
        aborted = r.signal.aborted;
      });
      expect((await a.runs.wait(session.id, next.id)).status).toBe('completed');
      expect(aborted).toBe(false);
      await expect(b.runs.interrupt(session.id)).rejects.toMatchObject({ code: 'no_active_run' });
    });

    it('sees an interrupt through the durable path alone (no signal sent) within a heartbeat', async () => {
      const session = await a.create();
      const run = await a.runs.start(session.id, untilInterrupted);
      await waitFor(async () => (await a.runs.get(session.id, run.id)).status === 'running');
      // Flag the row directly: no SignalBus message at all, only the heartbeat can notice.
      const flagged = await new PostgresRunRepository(internals(b).db).requestInterrupt('default', session.id, undefined);
      expect(flagged).toHaveLength(1);
      const started = Date.now();
      const ended = await a.runs.wait(session.id, run.id);
      expect(ended.status).toBe('interrupted');
      // Without the durable path the run would never end; that it ended by the heartbeat is
      // `via` below. The delay (one heartbeat, LEASE / 3, when idle) is printed, and bounded
      // only generously: a loaded machine can hold a heartbeat back.
      const delay = Date.now() - started;
      console.log(`[${mode.name}] interrupt by heartbeat alone: ${delay} ms (heartbeat every ${Number(LEASE) / 3} ms)`);
      expect(delay).toBeLessThan(10_000);
      const terminal = (await collect(a.runs.stream(session.id, { after: (ended.endSeq ?? 1) - 1 })))[0];
      expect(terminal?.data).toMatchObject({ interrupt: { via: 'heartbeat' } });
    });

    it('does not lose an interrupt that arrives before the runner starts', async () => {
      const session = await a.create();
      let called = false;
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      await a.runs.start(session.id, () => gate);
      const queued = await a.runs.start(session.id, () => void (called = true), { ifBusy: 'enqueue' });
      const cancelled = await b.runs.interrupt(session.id, { runId: queued.id });
      expect(cancelled.status).toBe('interrupted');
      release();
      await waitFor(async () => (await a.get(session.id)).status === 'idle', 10_000, 'session idle');
      expect(called).toBe(false);
      expect((await a.runs.get(session.id, queued.id)).status).toBe('interrupted');
      await expect(b.runs.interrupt(session.id, { runId: queued.id })).rejects.toMatchObject({ code: 'run_ended' });
    });

    it('ifBusy interrupt stops the running run and starts the new one after it', async () => {
      const session = await a.create();
      const first = await a.runs.start(session.id, untilInterrupted);
      await waitFor(async () => (await a.runs.list(session.id)).items.length > 0);
      const second = await b.runs.start(session.id, emitting(2), { ifBusy: 'interrupt' });
      expect(second.status).toBe('queued');
      expect((await b.runs.wait(session.id, second.id)).status).toBe('completed');
      expect((await a.runs.get(session.id, first.id)).status).toBe('interrupted');
    });

    it('forwards input from another instance to the runner, in order', async () => {
      const session = await a.create();
      const run = await a.runs.start(session.id, async (r) => {
        await r.emit({ type: 'status', data: { state: 'ready' } });
        let n = 0;
        for await (const input of r.inputs) {
          await r.emit({ type: 'echo', data: input });
          if (++n === 3) return { sessionStatus: 'waiting_input' as const };
        }
      });
      const events: OutputEvent[] = [];
      const reading = (async () => {
        for await (const e of a.runs.stream(session.id)) events.push(e);
      })();
      await waitFor(() => events.some((e) => e.type === 'status' && (e.data as { state?: string }).state === 'ready'));
      for (const text of ['one', 'two', 'three']) {
        const sent = await b.runs.sendInput(session.id, { text });
        expect(sent.runId).toBe(run.id);
      }
      await reading;
      expect(events.filter((e) => e.type === 'echo').map((e) => e.data)).toEqual([{ text: 'one' }, { text: 'two' }, { text: 'three' }]);
      expect((await a.runs.wait(session.id, run.id)).status).toBe('completed');
      expect((await b.get(session.id)).status).toBe('waiting_input');
      await expect(b.runs.sendInput(session.id, 'late')).rejects.toMatchObject({ code: 'no_active_run' });
    });

    it('fails a run whose runner throws, with an error terminal event', async () => {
      const session = await a.create();
      const run = await a.runs.start(session.id, async (r) => {
        await r.emit({ type: 'text', data: 'before' });
        throw new Error('model exploded');
      });
      const events = await collect(b.runs.stream(session.id));
      expect(events.at(-1)).toMatchObject({ type: 'error', data: { status: 'failed', reason: 'runner_error', error: 'model exploded' } });
      expect((await a.runs.wait(session.id, run.id)).status).toBe('failed');
      expect((await a.get(session.id)).status).toBe('idle');
    });

    it('refuses bad events, reserved types, and runs on ended sessions', async () => {
      const session = await a.create();
      let thrown: unknown[] = [];
      const run = await a.runs.start(session.id, async (r) => {
        for (const bad of [{ type: 'done' }, { type: 'error' }, { type: '' }, { type: 'x'.repeat(80) }]) {
          try {
            await r.emit(bad);
          } catch (err) {
            thrown.push((err as { code?: string }).code);
          }
        }
      });
      await a.runs.wait(session.id, run.id);
      expect(thrown).toEqual(['validation_failed', 'validation_failed', 'validation_failed', 'validation_failed']);
      thrown = [];
      await a.terminate(session.id);
      await expect(a.runs.start(session.id, emitting(1))).rejects.toMatchObject({ code: 'session_ended' });
      await expect(a.runs.start('not an id', emitting(1))).rejects.toMatchObject({ code: 'validation_failed' });
    });

    it('keeps tenants apart', async () => {
      const session = await a.create({}, { tenant: 'acme' });
      const run = await a.runs.start(session.id, emitting(1), { tenant: 'acme' });
      await a.runs.wait(session.id, run.id, { tenant: 'acme' });
      await expect(b.runs.get(session.id, run.id, { tenant: 'other' })).rejects.toMatchObject({ code: 'run_not_found' });
      await expect(b.runs.list(session.id, {}, { tenant: 'other' })).rejects.toMatchObject({ code: 'session_not_found' });
      await expect(collect(b.runs.stream(session.id, { tenant: 'other' }))).rejects.toMatchObject({ code: 'session_not_found' });
      await expect(b.runs.interrupt(session.id, { tenant: 'other' })).rejects.toMatchObject({ code: 'session_not_found' });
      await expect(b.runs.start(session.id, emitting(1), { tenant: 'other' })).rejects.toMatchObject({ code: 'session_not_found' });
      expect((await collect(b.runs.stream(session.id, { tenant: 'acme' }))).at(-1)?.type).toBe('done');
    });

    it('finalizes a run whose owner vanished as failed/owner_lost; readers get the terminal event', async () => {
      const session = await a.create();
      // A run owned by an instance that does not exist: nobody renews its lease.
      const repo = new PostgresRunRepository(internals(a).db);
      const ghost = await repo.start({
        tenant: 'default',
        sessionId: session.id,
        runId: '01900000-0000-7000-8000-000000000001',
        owner: 'ghost',
        input: null,
        leaseMs: 300,
        ifBusy: 'reject',
        maxQueued: 10,
      });
      expect(ghost.run.status).toBe('running');
      await a.runs.start(session.id, emitting(1), { ifBusy: 'enqueue' });
      const reading = collect(b.runs.stream(session.id));
      await new Promise((r) => setTimeout(r, 400));
      // The public task a scheduler of the user's own runs (RUN_SWEEP_INTERVAL_MS=0).
      const swept = await orphanedRunsTask(b).run();
      expect(swept).toBeGreaterThanOrEqual(1);
      const events = await reading;
      expect(events.at(-1)).toMatchObject({ type: 'error', data: { reason: 'owner_lost', status: 'failed' } });
      expect((await a.runs.get(session.id, ghost.run.id)).endReason).toBe('owner_lost');
      // The queued run behind it was promoted and ran.
      await waitFor(async () => (await a.runs.list(session.id)).items.every((r) => r.status !== 'queued' && r.status !== 'running'));
      expect((await a.runs.list(session.id)).items[0]?.status).toBe('completed');
      expect(await internals(b).runs.sweepOrphans()).toBe(0);
    });

    it('ends a reader (session_not_found) when the session is purged under it', async () => {
      const session = await a.create();
      await a.runs.start(session.id, untilInterrupted);
      const events: OutputEvent[] = [];
      const reading = (async () => {
        for await (const e of b.runs.stream(session.id)) events.push(e);
      })();
      await waitFor(() => events.some((e) => e.type === 'text'));
      await b.purge(session.id);
      await expect(reading).rejects.toMatchObject({ code: 'session_not_found' });
    });

    it('archives many runs\' awaited emits in shared commits, each session contiguous; a run ended meanwhile loses only its own', async () => {
      const runs = 40;
      const perRun = 25;
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      const created = await Promise.all(Array.from({ length: runs }, () => a.create({})));
      const started = await Promise.all(
        created.map((session) =>
          a.runs.start(session.id, async (run) => {
            await gate;
            for (let i = 0; i < perRun; i++) await run.emit({ type: 'text', data: { i } });
          }),
        ),
      );
      // One more run in the same wave, interrupted from the other instance while it emits.
      const victim = await a.create({});
      let emittedBeforeEnd = 0;
      const victimRun = await a.runs.start(victim.id, async (run) => {
        await gate;
        while (!run.signal.aborted) {
          await run.emit({ type: 'text', data: { i: emittedBeforeEnd } });
          emittedBeforeEnd++;
        }
      });
      release();
      await waitFor(() => emittedBeforeEnd >= 5);
      await b.runs.interrupt(victim.id);
      const ended = await Promise.all(started.map((r) => a.runs.wait(r.sessionId, r.id)));
      expect(ended.every((r) => r.status === 'completed')).toBe(true);
      expect(await a.runs.wait(victim.id, victimRun.id)).toMatchObject({ status: 'interrupted' });

      for (const session of created) {
        const events = await collect(b.runs.stream(session.id, { after: 0 }));
        expectContiguous(events, 0);
        expect(events.filter((e) => e.type === 'text').map((e) => (e.data as { i: number }).i)).toEqual([...Array(perRun).keys()]);
        expect(events.at(-1)?.type).toBe('done');
      }
      const victimEvents = await collect(b.runs.stream(victim.id, { after: 0 }));
      expectContiguous(victimEvents, 0);
      expect(victimEvents.at(-1)).toMatchObject({ type: 'done', data: { status: 'interrupted' } });
      // Every archived text event was acknowledged to the runner, or it is the last one in flight.
      expect(victimEvents.filter((e) => e.type === 'text').length - emittedBeforeEnd).toBeGreaterThanOrEqual(0);
      expect(victimEvents.filter((e) => e.type === 'text').length - emittedBeforeEnd).toBeLessThanOrEqual(1);

      // Rows of one commit share its transaction time: the released wave's first events (one
      // per run, handed over in the same turn) went in one statement.
      const rows = await internals(a).db.query<{ sessions: number }>(
        `SELECT count(DISTINCT session_id)::int AS sessions FROM run_output
         WHERE session_id = ANY($1::text[]) AND type = 'text' GROUP BY created_at ORDER BY 1 DESC LIMIT 1`,
        [created.map((c) => c.id)],
      );
      expect(rows[0]?.sessions).toBeGreaterThan(1);
    });

    it('a value the database refuses fails only the run that emitted it, not the runs whose events shared its commit', async () => {
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      const sessionsOf = await Promise.all(Array.from({ length: 6 }, () => a.create({})));
      const runs = await Promise.all(
        sessionsOf.map((session, n) =>
          a.runs.start(session.id, async (run) => {
            await gate;
            for (let i = 0; i < 5; i++) {
              // PostgreSQL's jsonb has no NUL character: the first run's second event is refused.
              await run.emit({ type: 'text', data: { text: n === 0 && i === 1 ? 'a\u0000b' : `${n}.${i}` } });
            }
          }),
        ),
      );
      release();
      const ended = await Promise.all(runs.map((r) => a.runs.wait(r.sessionId, r.id)));
      expect(ended[0]).toMatchObject({ status: 'failed' });
      expect(ended.slice(1).map((r) => r.status)).toEqual(Array(5).fill('completed'));
      for (const session of sessionsOf.slice(1)) {
        const texts = (await collect(b.runs.stream(session.id, { after: 0 }))).filter((e) => e.type === 'text');
        expect(texts).toHaveLength(5);
      }
    });

    it.skipIf(!mode.shared)('a session another transaction holds stalls only its own run: the others\' events commit meanwhile', async () => {
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      const [busy, ...free] = await Promise.all(Array.from({ length: 5 }, () => a.create({})));
      const emitted = new Map<string, number>();
      const runs = await Promise.all(
        [busy!, ...free].map((session) =>
          a.runs.start(session.id, async (run) => {
            await gate;
            for (let i = 0; i < 10; i++) {
              await run.emit({ type: 'text', data: { i } });
              emitted.set(session.id, i + 1);
            }
          }),
        ),
      );
      // Holds the busy session's row, as a long transaction of an operator or a slow batch would.
      let unlock!: () => void;
      const held = new Promise<void>((resolve) => (unlock = resolve));
      let locked!: () => void;
      const isLocked = new Promise<void>((resolve) => (locked = resolve));
      const holder = internals(b).db.transaction(async (tx) => {
        await tx.query('SELECT 1 FROM sessions WHERE id = $1 FOR UPDATE', [busy!.id]);
        locked();
        await held;
      });
      await isLocked;
      release();
      await waitFor(() => free.every((s) => emitted.get(s.id) === 10), 20_000, 'the free runs to emit everything');
      expect(emitted.get(busy!.id) ?? 0).toBe(0);
      unlock();
      await holder;
      const ended = await Promise.all(runs.map((r) => a.runs.wait(r.sessionId, r.id)));
      expect(ended.map((r) => r.status)).toEqual(Array(5).fill('completed'));
      const texts = (await collect(b.runs.stream(busy!.id, { after: 0 }))).filter((e) => e.type === 'text');
      expect(texts.map((e) => (e.data as { i: number }).i)).toEqual([...Array(10).keys()]);
    });

    /** An instance of its own with the longest commit delay (1 s) from `siblings` runs: the delay's condition counts the runs of the instance. */
    const delayedInstance = (name: string, siblings: number) =>
      storage.open({ RUN_LEASE_MS: LEASE, INSTANCE_ID: `${name}-${mode.name}`, OUTPUT_COMMIT_DELAY_MS: '1000', OUTPUT_COMMIT_SIBLINGS: String(siblings) });
    /** How many commits the sessions' `text` events took: rows of one commit share its transaction time. */
    const textCommits = async (s: Sessions, ids: string[]): Promise<number> => {
      const rows = await internals(s).db.query<{ commits: number }>(
        `SELECT count(DISTINCT created_at)::int AS commits FROM run_output WHERE session_id = ANY($1::text[]) AND type = 'text'`,
        [ids],
      );
      return rows[0]?.commits ?? 0;
    };

    it.skipIf(!mode.shared)('the commit delay holds a statement for more runs\' events only while enough runs write on the instance', async () => {
      const c = await delayedInstance('c', 6);
      try {
        /** Starts `n` runs that each emit one event, 50 ms apart, once all are running; how many commits their events took. */
        const staggered = async (n: number): Promise<number> => {
          let release!: () => void;
          const gate = new Promise<void>((resolve) => (release = resolve));
          const created = await Promise.all(Array.from({ length: n }, () => c.create({})));
          const runs = await Promise.all(
            created.map((session, i) =>
              c.runs.start(session.id, async (run) => {
                await gate;
                await new Promise((resolve) => setTimeout(resolve, i * 50));
                await run.emit({ type: 'text', data: { i } });
              }),
            ),
          );
          release();
          const ended = await Promise.all(runs.map((r) => c.runs.wait(r.sessionId, r.id)));
          expect(ended.map((r) => r.status)).toEqual(Array(n).fill('completed'));
          return textCommits(c, created.map((s) => s.id));
        };
        // Six runs (the siblings): the first event waits up to 1 s, the others (250 ms later at most) join it.
        expect(await staggered(6)).toBe(1);
        // Five: no delay, each event goes as it comes (together only if the loop stalled 200 ms).
        expect(await staggered(5)).toBeGreaterThan(1);
      } finally {
        await c.close();
      }
    });

    it.skipIf(!mode.shared)('the commit delay ends once every run writing on the instance has an event waiting', async () => {
      // Ten rounds of the 1 s delay would take 10 s, which the deadline below does not allow.
      const c = await delayedInstance('d', 3);
      try {
        const created = await Promise.all(Array.from({ length: 3 }, () => c.create({})));
        let release!: () => void;
        const gate = new Promise<void>((resolve) => (release = resolve));
        const emitted: number[] = [];
        const runs = await Promise.all(
          created.map((session, i) =>
            c.runs.start(session.id, async (run) => {
              await gate;
              // Each awaits its emits, as a runner relaying tokens does: every round, all three wait on one statement.
              for (let k = 0; k < 10; k++) await run.emit({ type: 'text', data: { i, k } });
              emitted.push(i);
            }),
          ),
        );
        release();
        await waitFor(() => emitted.length === 3, 5_000, 'every run to have its ten emits committed');
        const ended = await Promise.all(runs.map((r) => c.runs.wait(r.sessionId, r.id)));
        expect(ended.map((r) => r.status)).toEqual(Array(3).fill('completed'));
        // The three runs' k-th events went together: one commit per round.
        expect(await textCommits(c, created.map((s) => s.id))).toBe(10);
      } finally {
        await c.close();
      }
    });

    it('interrupts a run when its session is terminated', async () => {
      const session = await a.create();
      const run = await a.runs.start(session.id, untilInterrupted);
      await waitFor(async () => (await a.runs.get(session.id, run.id)).status === 'running');
      await b.terminate(session.id);
      const ended = await a.runs.wait(session.id, run.id);
      expect(ended).toMatchObject({ status: 'interrupted', endReason: 'session_ended' });
      expect((await a.get(session.id)).status).toBe('terminated');
    });
  });
}
