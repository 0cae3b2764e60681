/**
 * `persistOutput` (issue 11): a run's text output becomes one assistant message of the
 * history in the transaction that finalizes it, in every mode (embedded, PostgreSQL only,
 * PostgreSQL + Redis). In the shared modes a second instance reads what the first wrote.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresRunRepository } from '../../src/adapters/postgres/run-repository.js';
import { uuidv7 } from '../../src/core/ids.js';
import type { FinalizeRequest, OutputEvent, RunContext } from '../../src/core/runs.js';
import { internals, type Sessions } from '../../src/internal.js';
import { collect, MODES, modeReady, waitFor } from './support.js';

const LEASE = '900';

/** A runner that streams `parts` as text events around a tool call, then returns. */
const speaking = (parts: readonly string[]) => async (run: RunContext) => {
  for (const [i, text] of parts.entries()) {
    await run.emit({ type: 'text', data: { text } });
    if (i === 0) await run.emit({ type: 'tool_call', data: { name: 'lookup', args: { q: 'x' } } });
  }
};

/** Streams `parts`, then waits to be interrupted. */
const speakingUntilInterrupted = (parts: readonly string[]) => async (run: RunContext) => {
  for (const text of parts) await run.emit({ type: 'text', data: { text } });
  await new Promise<void>((resolve) => {
    if (run.signal.aborted) resolve();
    run.signal.addEventListener('abort', () => resolve(), { once: true });
  });
  throw run.signal.reason;
};

function streamedText(events: readonly OutputEvent[]): string {
  return events
    .filter((e) => e.type === 'text')
    .map((e) => (e.data as { text: string }).text)
    .join('');
}

for (const mode of MODES.filter((m) => m.name !== 'postgres+redis-cluster')) {
  const ready = modeReady(mode, `runs/persist-output/${mode.name}`);
  describe.skipIf(!ready)(`runs/persist-output/${mode.name}`, () => {
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

    async function outbox(sessionId: string): Promise<Array<{ type: string; payload: Record<string, unknown> }>> {
      return internals(a).db.query('SELECT type, payload FROM outbox WHERE session_id = $1 ORDER BY id', [sessionId]);
    }

    it('appends the streamed text as one assistant message when the run completes', async () => {
      const session = await a.create();
      await a.items.append(session.id, [{ role: 'user', content: 'look something up' }]);
      const before = await a.get(session.id);
      const run = await a.runs.start(session.id, speaking(['Found ', 'it: ', '42.']), { persistOutput: true });
      expect(run.persistOutput).toBe(true);
      const events = await collect(b.runs.stream(session.id));
      expect(events.at(-1)).toMatchObject({ type: 'done', data: { status: 'completed' } });
      // The item commits with the terminal event: a reader who saw `done` finds it at once.
      const items = (await b.items.list(session.id)).items;
      expect(items).toHaveLength(2);
      expect(items[1]).toMatchObject({ id: run.id, seq: 2, role: 'assistant', type: 'message', content: 'Found it: 42.' });
      expect(items[1]?.content).toBe(streamedText(events));
      const ended = await b.runs.get(session.id, run.id);
      expect(ended).toMatchObject({ status: 'completed', persistOutput: true });
      // Counters as an append leaves them (message_count is the caller's), and one version per
      // write: the start, then the finalization with its item.
      await waitFor(async () => (await b.get(session.id)).status === 'idle', 10_000, 'idle on the other instance');
      const after = await b.get(session.id);
      expect(after.version).toBe(before.version + 2);
      expect(after.messageCount).toBe(before.messageCount);
      const types = (await outbox(session.id)).map((e) => e.type);
      expect(types.slice(-2)).toEqual(['run.completed', 'item.added']);
      const added = (await outbox(session.id)).at(-1);
      expect(added?.payload).toMatchObject({ count: 1, first_seq: 2, last_seq: 2, version: after.version, run_id: run.id });
      // The next append continues the item seqs.
      const next = await b.items.append(session.id, [{ role: 'user', content: 'thanks' }]);
      expect(next.items[0]?.seq).toBe(3);
    });

    it('appends nothing without the flag, nor for a run that streamed no text', async () => {
      const session = await a.create();
      const plain = await a.runs.start(session.id, speaking(['not ', 'kept']));
      expect(plain.persistOutput).toBe(false);
      await a.runs.wait(session.id, plain.id);
      const silent = await a.runs.start(session.id, async (r) => {
        await r.emit({ type: 'tool_call', data: { name: 'noop' } });
      }, { persistOutput: true });
      expect((await a.runs.wait(session.id, silent.id)).status).toBe('completed');
      expect((await b.items.list(session.id)).items).toEqual([]);
      expect((await outbox(session.id)).map((e) => e.type)).not.toContain('item.added');
    });

    it('keeps what an interrupted run said before it was stopped', async () => {
      const session = await a.create();
      const run = await a.runs.start(session.id, speakingUntilInterrupted(['I was ', 'saying']), { persistOutput: true });
      const seen: OutputEvent[] = [];
      const reading = (async () => {
        for await (const e of b.runs.stream(session.id)) seen.push(e);
      })();
      await waitFor(() => seen.filter((e) => e.type === 'text').length === 2, 10_000, 'the text events');
      await b.runs.interrupt(session.id);
      await reading;
      expect(seen.at(-1)).toMatchObject({ type: 'done', data: { status: 'interrupted' } });
      const items = (await b.items.list(session.id)).items;
      expect(items).toEqual([expect.objectContaining({ id: run.id, role: 'assistant', type: 'message', content: 'I was saying' })]);
    });

    it('appends nothing for a failed run', async () => {
      const session = await a.create();
      const run = await a.runs.start(session.id, async (r) => {
        await r.emit({ type: 'text', data: { text: 'half an ans' } });
        throw new Error('model went away');
      }, { persistOutput: true });
      expect((await a.runs.wait(session.id, run.id)).status).toBe('failed');
      expect((await b.items.list(session.id)).items).toEqual([]);
    });

    it('shows the item exactly when the run reads completed', async () => {
      const session = await a.create();
      const run = await a.runs.start(session.id, async (r) => {
        for (let i = 0; i < 20; i++) await r.emit({ type: 'text', data: { text: `${i} ` } });
      }, { persistOutput: true });
      // Whatever the interleaving, a read of the run and then of the items never sees the run
      // ended without its item, and the items never hold it while the run still runs.
      const deadline = Date.now() + 10_000;
      for (;;) {
        expect(Date.now(), 'the run to complete').toBeLessThan(deadline);
        const items = (await b.items.list(session.id)).items;
        const status = (await b.runs.get(session.id, run.id)).status;
        if (status !== 'completed') {
          expect(items).toEqual([]);
          // Lets the runner go on: PGlite answers without I/O, so a loop of reads could starve it.
          await new Promise((resolve) => setImmediate(resolve));
          continue;
        }
        expect((await b.items.list(session.id)).items.map((i) => i.id)).toEqual([run.id]);
        break;
      }
    });

    it('appends once when the finalization is retried or raced', async () => {
      const session = await a.create();
      const repo = new PostgresRunRepository(internals(a).db);
      const runId = uuidv7();
      const started = await repo.start({
        tenant: 'default',
        sessionId: session.id,
        runId,
        owner: 'ghost',
        input: null,
        leaseMs: 60_000,
        ifBusy: 'reject',
        maxQueued: 10,
        persistOutput: true,
      });
      expect(started.run.persistOutput).toBe(true);
      await repo.appendOutput([{ tenant: 'default', sessionId: session.id, runId, owner: 'ghost', offset: 0, events: [{ type: 'text', data: { text: 'once' } }, { type: 'text', data: 'only' }] }]);
      const end: FinalizeRequest = {
        tenant: 'default',
        sessionId: session.id,
        runId,
        owner: 'ghost',
        status: 'completed',
        reason: 'completed',
        error: null,
        sessionStatus: 'idle',
        leaseMs: 60_000,
      };
      const results = await Promise.all([repo.finalize(end), repo.finalize(end), repo.finalize(end)]);
      expect(results.filter((r) => r !== null)).toHaveLength(1);
      expect(await repo.finalize(end)).toBeNull();
      expect((await b.items.list(session.id)).items.map((i) => i.content)).toEqual(['onceonly']);

      // The owner and the orphan sweep race for a run whose lease lapsed: one of them ends it,
      // and the item is there exactly when the owner (completed) won.
      const second = uuidv7();
      await repo.start({
        tenant: 'default',
        sessionId: session.id,
        runId: second,
        owner: 'ghost',
        input: null,
        leaseMs: 1,
        ifBusy: 'reject',
        maxQueued: 10,
        persistOutput: true,
      });
      await repo.appendOutput([{ tenant: 'default', sessionId: session.id, runId: second, owner: 'ghost', offset: 0, events: [{ type: 'text', data: { text: 'raced' } }] }]);
      await waitFor(async () => (await repo.orphans(100)).some((o) => o.id === second), 10_000, 'the lease to lapse');
      const [owner, sweep] = await Promise.all([
        repo.finalize({ ...end, runId: second }),
        repo.finalize({ ...end, runId: second, owner: null, status: 'failed', reason: 'owner_lost', error: 'lost' }),
      ]);
      expect([owner, sweep].filter((r) => r !== null)).toHaveLength(1);
      const contents = (await b.items.list(session.id)).items.map((i) => i.content);
      expect(contents).toEqual(owner ? ['onceonly', 'raced'] : ['onceonly']);
    });
  });
}
