/**
 * Workers (issue 12) through the library, on PGlite and PostgreSQL: runs of an agent started
 * on an instance that does not serve it execute on one that does, within its concurrency;
 * claims never take a run twice (SKIP LOCKED, two claimers racing); a run nobody serves stays
 * queued; not_before holds a run back; a lost owner's `retry` run is handed back and restarts
 * on another worker with a `restarted` event, a `fail` run ends owner_lost; RUN_MAX_MS and
 * RUN_IDLE_OUTPUT_MS end a run; usage lands in the session's counters; a closing worker drains.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PostgresRunRepository } from '../../src/adapters/postgres/run-repository.js';
import type { SqlDatabase } from '../../src/adapters/postgres/database.js';
import type { Run, RunContext, Runner } from '../../src/core/runs.js';
import { internals, type Sessions } from '../../src/internal.js';
import { collect, MODES, modeReady, waitFor } from './support.js';

const LEASE = '600';

/** A runner that emits `n` words `delayMs` apart, stopping at the signal. */
function words(n: number, delayMs: number): Runner {
  return async (run) => {
    for (let i = 0; i < n && !run.signal.aborted; i++) {
      await run.emit({ type: 'text', data: { text: `w${i} ` } });
      await new Promise((r) => setTimeout(r, delayMs));
    }
  };
}

/** A runner that emits once and then waits for its signal (a hung model call that honours abort). */
const untilAborted: Runner = async (run) => {
  await run.emit({ type: 'text', data: { text: 'started' } });
  await new Promise<void>((resolve) => run.signal.addEventListener('abort', () => resolve(), { once: true }));
};

const ended = (r: Run) => r.status !== 'running' && r.status !== 'queued';

for (const mode of MODES.filter((m) => m.name === 'embedded' || m.name === 'postgres' || m.name === 'postgres+redis')) {
  const ready = modeReady(mode, `runs/workers/${mode.name}`);
  describe.skipIf(!ready)(`runs/workers/${mode.name}`, () => {
    let storage: Awaited<ReturnType<typeof mode.prepare>>;
    /** API-only on shared storage; the one instance in embedded mode. */
    let api: Sessions;
    let db: SqlDatabase;
    const opened: Sessions[] = [];
    const open = async (env: Record<string, string>) => {
      if (!mode.shared) return api;
      const s = await storage.open({ RUN_LEASE_MS: LEASE, RUN_CLAIM_INTERVAL_MS: '100', DATABASE_POOL_MAX: '4', ...env });
      opened.push(s);
      return s;
    };

    beforeAll(async () => {
      storage = await mode.prepare();
      api = await storage.open({
        RUN_LEASE_MS: LEASE,
        RUN_CLAIM_INTERVAL_MS: '100',
        INSTANCE_ID: `api-${mode.name}`,
        ...(mode.shared ? { DATABASE_POOL_MAX: '6' } : {}),
        ...(mode.shared ? { SERVE_AGENTS: 'false' } : {}),
      });
      db = internals(api).db;
    });

    // Each test's workers are closed after it: the database's connections are shared with other suites.
    afterEach(async () => {
      for (const s of opened.splice(0)) await s.close().catch(() => undefined);
    });

    afterAll(async () => {
      await api?.close();
      await storage?.dispose();
    });

    it('executes runs of an agent on the instance that serves it, at most `concurrency` at once', async () => {
      const worker = await open({ SERVE_AGENTS: 'false', INSTANCE_ID: `worker-${mode.name}` });
      let running = 0;
      let most = 0;
      const handle = worker.runs.serve('conc', async (run) => {
        running++;
        most = Math.max(most, running);
        try {
          await words(3, 20)(run);
        } finally {
          running--;
        }
      }, { concurrency: 2 });
      const ids = await Promise.all(Array.from({ length: 6 }, async () => (await api.create()).id));
      const runs = await Promise.all(ids.map((id) => api.runs.start(id, { agent: 'conc', input: 'go' })));
      const done = await Promise.all(runs.map((r) => api.runs.wait(r.sessionId, r.id)));
      for (const r of done) {
        expect(r).toMatchObject({ status: 'completed', agent: 'conc', owner: worker.config.instanceId });
      }
      expect(most).toBe(2);
      const output = await collect(api.runs.stream(ids[0] as string, { after: 0 }));
      expect(output.map((e) => e.type)).toEqual(['status', 'text', 'text', 'text', 'done']);
      await handle.stop();
    });

    it('keeps a run of an agent nobody serves queued, unowned and unleased', async () => {
      const id = (await api.create()).id;
      const run = await api.runs.start(id, { agent: 'nobody', input: 1 });
      expect(run).toMatchObject({ status: 'queued', owner: null, leaseExpiresAt: null, agent: 'nobody' });
      // A worker of another agent polls and claims its own run meanwhile; the other stays queued.
      const worker = await open({ SERVE_AGENTS: 'false', INSTANCE_ID: `other-${mode.name}` });
      const handle = worker.runs.serve('other', words(1, 1));
      const otherId = (await api.create()).id;
      const other = await api.runs.start(otherId, { agent: 'other' });
      expect((await api.runs.wait(otherId, other.id)).status).toBe('completed');
      await internals(api).runs.sweepOrphans();
      expect(await api.runs.get(id, run.id)).toMatchObject({ status: 'queued', owner: null, leaseExpiresAt: null });
      await handle.stop();
      // Served at last, it runs.
      const late = worker.runs.serve('nobody', words(1, 1));
      expect((await api.runs.wait(id, run.id)).status).toBe('completed');
      await late.stop();
    });

    it('claims a run once when two claimers race (SKIP LOCKED), and not before not_before', async () => {
      const ids = await Promise.all(Array.from({ length: 30 }, async () => (await api.create()).id));
      const runs = await Promise.all(ids.map((id) => api.runs.start(id, { agent: 'race' })));
      const held = runs[0] as Run;
      await db.query(`UPDATE runs SET not_before = now() + interval '1 hour' WHERE id = $1`, [held.id]);
      const one = new PostgresRunRepository(db);
      const two = new PostgresRunRepository(db);
      const [a, b] = await Promise.all([one.claim('claimer-1', 'race', 40, 60_000), two.claim('claimer-2', 'race', 40, 60_000)]);
      const claimed = [...a.claimed, ...b.claimed].map((c) => c.run.id);
      expect(new Set(claimed).size).toBe(claimed.length);
      expect(claimed.sort()).toEqual(runs.slice(1).map((r) => r.id).sort());
      if (mode.shared) expect(a.claimed.length * b.claimed.length).toBeGreaterThanOrEqual(0);
      for (const c of a.claimed) expect(c.run).toMatchObject({ status: 'running', owner: 'claimer-1' });
      for (const c of b.claimed) expect(c.run).toMatchObject({ status: 'running', owner: 'claimer-2' });
      expect(await api.runs.get(held.sessionId, held.id)).toMatchObject({ status: 'queued', owner: null });
      await db.query(`UPDATE runs SET not_before = now() - interval '1 second' WHERE id = $1`, [held.id]);
      const later = await one.claim('claimer-1', 'race', 5, 60_000);
      expect(later.claimed.map((c) => c.run.id)).toEqual([held.id]);
      // Behind a run of the session that runs, nothing is claimable.
      const busy = await api.runs.start(held.sessionId, { agent: 'race', ifBusy: 'enqueue' });
      expect(busy).toMatchObject({ status: 'queued', owner: null });
      expect((await one.claim('claimer-1', 'race', 5, 60_000)).claimed).toEqual([]);
    });

    it('hands a lost retry run back: it restarts on another worker with a `restarted` event; a fail run ends owner_lost', async () => {
      for (const policy of ['retry', 'fail'] as const) {
        const id = (await api.create()).id;
        const run = await api.runs.start(id, { agent: `lost-${policy}`, onOwnerLost: policy, maxRetries: 1, input: 'x' });
        expect(run).toMatchObject({ status: 'queued', onOwnerLost: policy, maxRetries: 1, attempts: 0 });
        // A worker that claims it and dies: its lease lapses.
        const ghost = new PostgresRunRepository(db);
        const claimed = await ghost.claim('ghost', `lost-${policy}`, 1, 60_000);
        expect(claimed.claimed.map((c) => c.run.id)).toEqual([run.id]);
        await db.query(`UPDATE runs SET lease_expires_at = now() - interval '1 second' WHERE id = $1`, [run.id]);
        const worker = await open({ SERVE_AGENTS: 'false', INSTANCE_ID: `second-${policy}-${mode.name}` });
        const handle = worker.runs.serve(`lost-${policy}`, words(2, 5));
        expect(await internals(api).runs.sweepOrphans()).toBe(1);
        const done = await api.runs.wait(id, run.id);
        const output = await collect(api.runs.stream(id, { after: 0 }));
        if (policy === 'retry') {
          expect(done).toMatchObject({ status: 'completed', attempts: 1, owner: worker.config.instanceId });
          expect(output.map((e) => e.type)).toEqual(['status', 'restarted', 'status', 'text', 'text', 'done']);
          expect(output[1]?.data).toEqual({ run_id: run.id, attempt: 1, reason: 'owner_lost' });
          const events = await db.query<{ type: string }>(`SELECT type FROM outbox WHERE session_id = $1 AND type LIKE 'run.%' ORDER BY id`, [id]);
          expect(events.map((e) => e.type)).toEqual(['run.queued', 'run.started', 'run.restarted', 'run.started', 'run.completed']);
        } else {
          expect(done).toMatchObject({ status: 'failed', endReason: 'owner_lost', attempts: 0 });
          expect(output.map((e) => e.type)).toEqual(['status', 'error']);
        }
        // The session was repaired either way.
        await waitFor(async () => (await api.get(id)).status === 'idle', 5_000, 'the session idle');
        await handle.stop();
      }
    });

    // Embedded: one instance, configured once (the limits are shown on the others and in run-limits.test.ts).
    it.skipIf(!mode.shared)('fails a run at RUN_MAX_MS and a silent one at RUN_IDLE_OUTPUT_MS', async () => {
      const limited = await open({ INSTANCE_ID: `limits-${mode.name}`, SERVE_AGENTS: 'false', RUN_MAX_MS: '400', RUN_IDLE_OUTPUT_MS: '250' });
      const max = limited.runs.serve('busy-forever', async (run) => {
        // Talks all the time, so only the run's length limit ends it.
        while (!run.signal.aborted) {
          await run.emit({ type: 'text', data: { text: '.' } }).catch(() => undefined);
          await new Promise((r) => setTimeout(r, 30));
        }
      });
      const silent = limited.runs.serve('silent', untilAborted);
      const a = (await api.create()).id;
      const b = (await api.create()).id;
      const ra = await api.runs.start(a, { agent: 'busy-forever' });
      const rb = await api.runs.start(b, { agent: 'silent' });
      expect(await api.runs.wait(a, ra.id)).toMatchObject({ status: 'failed', endReason: 'run_max_ms' });
      expect(await api.runs.wait(b, rb.id)).toMatchObject({ status: 'failed', endReason: 'run_idle_output' });
      const last = (await collect(api.runs.stream(b, { after: 0 }))).at(-1);
      expect(last).toMatchObject({ type: 'error', data: { reason: 'run_idle_output', status: 'failed' } });
      await Promise.all([max.stop(), silent.stop()]);
    });

    it('adds the usage a run reports (and returns) to the session counters when it ends', async () => {
      const worker = await open({ SERVE_AGENTS: 'false', INSTANCE_ID: `usage-${mode.name}` });
      const handle = worker.runs.serve('metered', async (run: RunContext) => {
        run.reportUsage({ input_tokens: 10, output_tokens: 4, cost: 0.25 });
        await run.emit({ type: 'text', data: { text: 'ok' } });
        run.reportUsage({ output_tokens: 2 });
        expect(() => run.reportUsage({ input_tokens: -1 })).toThrow();
        return { usage: { output_tokens: 1, cost: 0.5 } };
      });
      const s = await api.create();
      await api.incrementCounters(s.id, { inputTokens: 1 });
      const run = await api.runs.start(s.id, { agent: 'metered' });
      expect((await api.runs.wait(s.id, run.id)).status).toBe('completed');
      const after = await api.get(s.id);
      expect(after).toMatchObject({ inputTokens: 11, outputTokens: 7, totalCostUsd: 0.75, status: 'idle' });
      // A library run with a closure reports usage the same way.
      const pinned = await api.runs.start(s.id, async (r) => {
        r.reportUsage({ input_tokens: 5 });
      });
      await api.runs.wait(s.id, pinned.id);
      expect((await api.get(s.id)).inputTokens).toBe(16);
      await handle.stop();
    });

    it.skipIf(!mode.shared)('drains on close: a run that ends within DRAIN_TIMEOUT_MS completes, a retry run that does not is handed back', async () => {
      const draining = await open({ SERVE_AGENTS: 'false', INSTANCE_ID: `draining-${mode.name}`, DRAIN_TIMEOUT_MS: '600' });
      draining.runs.serve('drain', async (run) => {
        // `quick` ends within the drain; `slow` would run for minutes.
        const n = run.input === 'quick' ? 8 : 100_000;
        for (let i = 0; i < n && !run.signal.aborted; i++) {
          await run.emit({ type: 'text', data: { text: `${i}` } }).catch(() => undefined);
          await new Promise((r) => setTimeout(r, 40));
        }
      }, { concurrency: 4 });
      const quick = (await api.create()).id;
      const slow = (await api.create()).id;
      const slowFail = (await api.create()).id;
      const rq = await api.runs.start(quick, { agent: 'drain', input: 'quick' });
      const rs = await api.runs.start(slow, { agent: 'drain', input: 'slow', onOwnerLost: 'retry', maxRetries: 2 });
      const rf = await api.runs.start(slowFail, { agent: 'drain', input: 'slow' });
      await waitFor(async () => (await Promise.all([rq, rs, rf].map((r) => api.runs.get(r.sessionId, r.id)))).every((r) => r.status === 'running'), 10_000, 'all running');
      const closing = draining.close();
      // The handed-back run waits for a worker; a new one takes it.
      const next = await open({ SERVE_AGENTS: 'false', INSTANCE_ID: `next-${mode.name}` });
      next.runs.serve('drain', async (run) => {
        await run.emit({ type: 'text', data: { text: 'again' } });
      });
      await closing;
      expect(await api.runs.wait(quick, rq.id)).toMatchObject({ status: 'completed', owner: draining.config.instanceId });
      expect(await api.runs.wait(slow, rs.id)).toMatchObject({ status: 'completed', attempts: 1, owner: next.config.instanceId });
      expect(await api.runs.wait(slowFail, rf.id)).toMatchObject({ status: 'failed', endReason: 'owner_shutdown' });
      const restarted = (await collect(api.runs.stream(slow, { after: 0 }))).find((e) => e.type === 'restarted');
      expect(restarted?.data).toEqual({ run_id: rs.id, attempt: 1, reason: 'owner_shutdown' });
      expect(ended(await api.runs.get(slow, rs.id))).toBe(true);
    });
  });
}
