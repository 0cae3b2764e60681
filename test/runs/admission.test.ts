/**
 * Turn admission (SPEC §7.1) through the library API, in every mode: embedded (PGlite),
 * PostgreSQL only and PostgreSQL + Redis; in the shared modes the second instance asks while
 * the first runs, so each decision is made across instances. Each `ifBusy` policy: the
 * decision, the run it names, and what the runners then see (`initialInputs`, `inputs`).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AdmittedRun, RunContext } from '../../src/core/runs.js';
import type { Sessions } from '../../src/internal.js';
import { MODES, modeReady, waitFor } from './support.js';

/** A runner that runs until released (or interrupted), recording what it was given. */
function holding(takesInput = true) {
  let release: () => void = () => undefined;
  const released = new Promise<void>((r) => {
    release = r;
  });
  const seen = { initial: [] as unknown[], steered: [] as unknown[], started: false };
  const runner = async (run: RunContext) => {
    seen.started = true;
    seen.initial = [...run.initialInputs];
    void (async () => {
      for await (const x of run.inputs) seen.steered.push(x);
    })();
    await Promise.race([released, new Promise((r) => run.signal.addEventListener('abort', r, { once: true }))]);
    run.signal.throwIfAborted();
  };
  return { runner, release, seen, takesInput };
}

/** Runners that return at once, recording each run's initial inputs and when it started. */
function recording() {
  const runs = new Map<string, { inputs: unknown[]; at: number }>();
  const runner = (run: RunContext) => {
    runs.set(run.id, { inputs: [...run.initialInputs], at: Date.now() });
  };
  return { runner, runs };
}

for (const mode of MODES) {
  const ready = modeReady(mode, `admission/${mode.name}`);
  describe.skipIf(!ready)(`admission/${mode.name}`, () => {
    let storage: Awaited<ReturnType<typeof mode.prepare>>;
    let a: Sessions;
    let b: Sessions;

    beforeAll(async () => {
      storage = await mode.prepare();
      a = await storage.open({ RUN_LEASE_MS: '1500', INSTANCE_ID: `adm-a-${mode.name}` });
      b = mode.shared ? await storage.open({ RUN_LEASE_MS: '1500', INSTANCE_ID: `adm-b-${mode.name}` }) : a;
    });

    afterAll(async () => {
      if (b !== a) await b?.close();
      await a?.close();
      await storage?.dispose();
    });

    /** A session with a holding run on `a`. */
    async function busy(takesInput = true) {
      const session = await a.create();
      const hold = holding(takesInput);
      const run = await a.runs.start(session.id, hold.runner, { input: 'hold', takesInput });
      expect(run).toMatchObject({ decision: 'started', status: 'running', inputs: ['hold'], takesInput });
      await waitFor(() => hold.seen.started, 10_000, 'the holding runner to start');
      return { id: session.id, run, hold };
    }

    it('reject refuses with session_busy; enqueue queues runs that then run in order, each with its input', async () => {
      const { id, run, hold } = await busy();
      await expect(b.runs.start(id, recording().runner, { input: 'x', ifBusy: 'reject' })).rejects.toMatchObject({ code: 'session_busy' });
      const rec = recording();
      const q1 = await b.runs.start(id, rec.runner, { input: 'q1', ifBusy: 'enqueue' });
      const q2 = await a.runs.start(id, rec.runner, { input: 'q2', ifBusy: 'enqueue' });
      expect([q1.decision, q2.decision]).toEqual(['queued', 'queued']);
      expect(q1).toMatchObject({ status: 'queued', inputs: ['q1'] });
      hold.release();
      expect((await a.runs.wait(id, run.id)).status).toBe('completed');
      expect((await b.runs.wait(id, q2.id)).status).toBe('completed');
      expect(rec.runs.get(q1.id)?.inputs).toEqual(['q1']);
      expect(rec.runs.get(q2.id)?.inputs).toEqual(['q2']);
      expect(rec.runs.get(q1.id)?.at).toBeLessThanOrEqual(rec.runs.get(q2.id)?.at ?? 0);
    });

    it('interrupt stops the running run and runs this one after it', async () => {
      const { id, run } = await busy();
      const rec = recording();
      const next = await b.runs.start(id, rec.runner, { input: 'next', ifBusy: 'interrupt' });
      expect(next).toMatchObject({ decision: 'interrupted', status: 'queued' });
      expect(await a.runs.wait(id, run.id)).toMatchObject({ status: 'interrupted', endReason: 'interrupted' });
      expect((await b.runs.wait(id, next.id)).status).toBe('completed');
      expect(rec.runs.get(next.id)?.inputs).toEqual(['next']);
    });

    it('steer delivers the input into the running run (from any instance), in order', async () => {
      const { id, run, hold } = await busy(true);
      const answers: AdmittedRun[] = [];
      for (const x of ['s1', 's2', 's3']) answers.push(await b.runs.start(id, recording().runner, { input: x, ifBusy: 'steer' }));
      expect(answers.map((r) => [r.decision, r.id])).toEqual(answers.map(() => ['steered', run.id]));
      await waitFor(() => hold.seen.steered.length === 3, 10_000, 'the steered input');
      expect(hold.seen.steered).toEqual(['s1', 's2', 's3']);
      hold.release();
      expect((await a.runs.wait(id, run.id)).status).toBe('completed');
      expect((await a.runs.list(id)).items).toHaveLength(1);
    });

    it('steer to a run asked to stop queues a follow-up instead of handing input to a run that is ending', async () => {
      const session = await a.create();
      let release: () => void = () => undefined;
      const released = new Promise<void>((r) => {
        release = r;
      });
      // Takes its time to stop: the run stays running, flagged, until released.
      const slow = await a.runs.start(session.id, async () => released, { input: 'slow', takesInput: true });
      await b.runs.interrupt(session.id);
      const rec = recording();
      const next = await b.runs.start(session.id, rec.runner, { input: 'after', ifBusy: 'steer' });
      expect(next).toMatchObject({ decision: 'queued', status: 'queued', inputs: ['after'] });
      release();
      expect((await a.runs.wait(session.id, slow.id)).status).toBe('interrupted');
      expect((await b.runs.wait(session.id, next.id)).status).toBe('completed');
      expect(rec.runs.get(next.id)?.inputs).toEqual(['after']);
    });

    it('steer to a runner that takes no input queues a follow-up, then merges into it', async () => {
      const { id, run, hold } = await busy(false);
      const rec = recording();
      const first = await b.runs.start(id, rec.runner, { input: 'f1', ifBusy: 'steer' });
      const second = await a.runs.start(id, rec.runner, { input: 'f2', ifBusy: 'steer' });
      expect(first).toMatchObject({ decision: 'queued', status: 'queued' });
      expect(second).toMatchObject({ decision: 'merged', id: first.id, inputs: ['f1', 'f2'] });
      expect(hold.seen.steered).toEqual([]);
      hold.release();
      await a.runs.wait(id, run.id);
      expect((await b.runs.wait(id, first.id)).status).toBe('completed');
      expect(rec.runs.get(first.id)?.inputs).toEqual(['f1', 'f2']);
    });

    it('latest cancels what was queued; only the last input runs', async () => {
      const { id, run, hold } = await busy();
      const rec = recording();
      const l1 = await b.runs.start(id, rec.runner, { input: 'l1', ifBusy: 'latest' });
      const l2 = await a.runs.start(id, rec.runner, { input: 'l2', ifBusy: 'latest' });
      const l3 = await b.runs.start(id, rec.runner, { input: 'l3', ifBusy: 'latest' });
      expect([l1.decision, l2.decision, l3.decision]).toEqual(['queued', 'replaced', 'replaced']);
      for (const r of [l1, l2]) expect(await a.runs.get(id, r.id)).toMatchObject({ status: 'cancelled', endReason: 'replaced', startSeq: null });
      hold.release();
      await a.runs.wait(id, run.id);
      expect((await b.runs.wait(id, l3.id)).status).toBe('completed');
      expect([...rec.runs.keys()]).toEqual([l3.id]);
      expect(rec.runs.get(l3.id)?.inputs).toEqual(['l3']);
    });

    it('merge appends to the queued run in arrival order, or queues one', async () => {
      const { id, run, hold } = await busy();
      const rec = recording();
      const m1 = await b.runs.start(id, rec.runner, { input: 'm1', ifBusy: 'merge' });
      const m2 = await a.runs.start(id, rec.runner, { input: { n: 2 }, ifBusy: 'merge' });
      const m3 = await b.runs.start(id, rec.runner, { input: 'm3', ifBusy: 'merge' });
      expect([m1.decision, m2.decision, m3.decision]).toEqual(['queued', 'merged', 'merged']);
      expect(m3).toMatchObject({ id: m1.id, status: 'queued', input: 'm1', inputs: ['m1', { n: 2 }, 'm3'] });
      hold.release();
      await a.runs.wait(id, run.id);
      expect(await b.runs.wait(id, m1.id)).toMatchObject({ status: 'completed', inputs: ['m1', { n: 2 }, 'm3'] });
      expect(rec.runs.get(m1.id)?.inputs).toEqual(['m1', { n: 2 }, 'm3']);
      // With nothing queued and nothing running, a merge starts at once.
      const alone = await a.runs.start(id, rec.runner, { input: 'alone', ifBusy: 'merge' });
      expect(alone.decision).toBe('started');
    });

    it('debounce on an idle session gathers inputs until the window closes, then runs them as one', async () => {
      const session = await a.create();
      const rec = recording();
      const first = await a.runs.start(session.id, rec.runner, { input: 'd1', ifBusy: 'debounce', debounceMs: 400 });
      expect(first).toMatchObject({ decision: 'debounced', status: 'queued', inputs: ['d1'] });
      expect(first.notBefore).not.toBeNull();
      const second = await b.runs.start(session.id, rec.runner, { input: 'd2', ifBusy: 'debounce', debounceMs: 400 });
      expect(second).toMatchObject({ decision: 'debounced', id: first.id, inputs: ['d1', 'd2'] });
      expect(Date.parse(second.notBefore ?? '')).toBeGreaterThanOrEqual(Date.parse(first.notBefore ?? ''));
      const done = await a.runs.wait(session.id, first.id);
      expect(done).toMatchObject({ status: 'completed', inputs: ['d1', 'd2'] });
      expect(Date.parse(done.startedAt ?? '')).toBeGreaterThanOrEqual(Date.parse(second.notBefore ?? '') - 100);
      expect(rec.runs.get(first.id)?.inputs).toEqual(['d1', 'd2']);
      // The window closed: the next input is a run of its own.
      const later = await b.runs.start(session.id, rec.runner, { input: 'd3', ifBusy: 'debounce', debounceMs: 50 });
      expect(later).toMatchObject({ decision: 'debounced', inputs: ['d3'] });
      expect(later.id).not.toBe(first.id);
      expect((await b.runs.wait(session.id, later.id)).status).toBe('completed');
      await waitFor(async () => (await a.get(session.id)).status === 'idle', 10_000, 'the session to fall idle');
    });

    it('debounce behind a running run: the follow-up waits for its window even when the run ends first', async () => {
      const { id, run, hold } = await busy();
      const rec = recording();
      const d = await b.runs.start(id, rec.runner, { input: 'late', ifBusy: 'debounce', debounceMs: 600 });
      expect(d).toMatchObject({ decision: 'debounced', status: 'queued' });
      hold.release();
      expect((await a.runs.wait(id, run.id)).status).toBe('completed');
      // The session holds a queued run whose window is still open: nothing runs meanwhile.
      const between = await a.runs.get(id, d.id);
      if (Date.parse(between.notBefore ?? '') > Date.now() + 100) expect(between.status).toBe('queued');
      const done = await b.runs.wait(id, d.id);
      expect(done.status).toBe('completed');
      expect(Date.parse(done.startedAt ?? '')).toBeGreaterThanOrEqual(Date.parse(d.notBefore ?? '') - 100);
    });

    it('cancelling a debounced run at the head of the queue starts the run behind it, nothing running', async () => {
      const session = await a.create();
      const rec = recording();
      const d = await a.runs.start(session.id, rec.runner, { input: 'wait', ifBusy: 'debounce', debounceMs: 30_000 });
      const e = await b.runs.start(session.id, rec.runner, { input: 'next', ifBusy: 'enqueue' });
      expect([d.decision, e.decision]).toEqual(['debounced', 'queued']);
      await b.runs.interrupt(session.id, { runId: d.id });
      expect(await a.runs.get(session.id, d.id)).toMatchObject({ status: 'interrupted', startSeq: null });
      expect((await b.runs.wait(session.id, e.id)).status).toBe('completed');
      expect([...rec.runs.keys()]).toEqual([e.id]);
    });

    it('validates debounce_ms', async () => {
      const session = await a.create();
      await expect(a.runs.start(session.id, recording().runner, { ifBusy: 'debounce' })).rejects.toMatchObject({ code: 'validation_failed' });
      await expect(a.runs.start(session.id, recording().runner, { ifBusy: 'debounce', debounceMs: 0 })).rejects.toMatchObject({
        code: 'validation_failed',
      });
      await expect(a.runs.start(session.id, recording().runner, { ifBusy: 'debounce', debounceMs: 60_001 })).rejects.toMatchObject({
        code: 'validation_failed',
      });
    });
  });
}
