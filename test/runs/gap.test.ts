/**
 * Replay gaps (issue 12): a reader whose cursor is older than what is retained gets a `gap`
 * event `{ from, to, reason }` first, then what is retained. The rows are pruned by the real
 * sweeps (`sessions.sweeper.runOnce()`) with a one-hour retention, after backdating the rows
 * the test made, so the retention has something to take. Output: OUTPUT_RETENTION_HOURS
 * prunes the output of ended runs but a session's latest; events: OUTBOX_RETENTION_HOURS
 * prunes the outbox (without a broker, unpublished rows too).
 */
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { internals, type Sessions } from '../../src/internal.js';
import { buildApp } from '../../src/server/app.js';
import { createChatStore } from '../../src/integrations/ai-sdk.js';
import { AgentSessionsClient } from '../../src/client/index.js';
import type { EventEnvelope } from '../../src/core/ports.js';
import type { OutputEvent, Run } from '../../src/core/runs.js';
import { collect, MODES, modeReady, uniqueToken } from './support.js';
import { readSse } from './sse-client.js';

const ADMIN = 'admin-key-for-gap-tests-0123456789';
const RETENTION = { OUTPUT_RETENTION_HOURS: '1', OUTBOX_RETENTION_HOURS: '1', SWEEP_INTERVAL_MS: '0', ADMIN_API_KEY: ADMIN };

/** A run that writes `words` text events and ends; resolves to the ended run. */
async function finishedRun(sessions: Sessions, sessionId: string, tenant: string, words: number): Promise<Run> {
  const run = await sessions.runs.start(
    sessionId,
    async (r) => {
      for (let i = 0; i < words; i++) await r.emit({ type: 'text', data: { text: `w${i} ` } });
    },
    { tenant, ifBusy: 'enqueue' },
  );
  return sessions.runs.wait(sessionId, run.id, { tenant });
}

async function backdateRun(sessions: Sessions, runId: string): Promise<void> {
  await internals(sessions).db.query(`UPDATE runs SET ended_at = now() - interval '2 hours' WHERE id = $1`, [runId]);
}

for (const mode of MODES.filter((m) => m.name === 'embedded' || m.name === 'postgres+redis')) {
  describe.skipIf(!modeReady(mode, `runs/gap (${mode.name})`))(`replay gaps (${mode.name})`, () => {
    let storage: Awaited<ReturnType<typeof mode.prepare>>;
    let sessions: Sessions;

    beforeAll(async () => {
      storage = await mode.prepare();
      sessions = await storage.open(RETENTION);
    });

    afterAll(async () => {
      await sessions?.close();
      await storage?.dispose();
    });

    it('prunes the output of old runs but the latest, and a reader from before gets gap first', async () => {
      const tenant = `gap-${uniqueToken()}`;
      const { id } = await sessions.create({}, { tenant });
      const first = await finishedRun(sessions, id, tenant, 3);
      const second = await finishedRun(sessions, id, tenant, 4);
      const third = await finishedRun(sessions, id, tenant, 2);
      // Old enough: the first two; the third is the session's latest run, kept whatever its age.
      for (const r of [first, second, third]) await backdateRun(sessions, r.id);

      const pass = await sessions.sweeper.runOnce();
      expect(pass.prune_output).toBeGreaterThanOrEqual(2);
      const kept = await internals(sessions).db.query<{ run_id: string }>(
        'SELECT DISTINCT run_id::text AS run_id FROM run_output WHERE tenant_id = $1 AND session_id = $2',
        [tenant, id],
      );
      expect(kept.map((r) => r.run_id)).toEqual([third.id]);

      const startSeq = third.startSeq ?? 0;
      const events = await collect(sessions.runs.stream(id, { tenant, after: 0 }));
      expect(events[0]).toMatchObject({ type: 'gap', seq: startSeq - 1, runId: third.id, data: { from: 1, to: startSeq - 1, reason: 'retention' } });
      const rest = events.slice(1);
      expect(rest.map((e) => e.seq)).toEqual(rest.map((_, i) => startSeq + i));
      expect(rest.at(-1)).toMatchObject({ type: 'done', runId: third.id });

      // A cursor inside the pruned range: the gap starts after it.
      const fromMiddle = await collect(sessions.runs.stream(id, { tenant, after: 5 }));
      expect(fromMiddle[0]).toMatchObject({ type: 'gap', data: { from: 6, to: startSeq - 1 } });
      // Resuming from the gap's seq (what an SSE client sends back) skips nothing retained and repeats no gap.
      const resumed = await collect(sessions.runs.stream(id, { tenant, after: events[0]?.seq ?? 0 }));
      expect(resumed.map((e: OutputEvent) => e.seq)).toEqual(rest.map((e) => e.seq));
      // The default start (the latest run) and any retained cursor: no gap.
      expect((await collect(sessions.runs.stream(id, { tenant })))[0]).toMatchObject({ type: 'status', seq: startSeq });
    });

    it('the AI SDK store: streamRun of a run whose output was pruned ends (with its end) instead of waiting', async () => {
      const { id } = await sessions.create({});
      const old = await finishedRun(sessions, id, 'default', 3);
      await finishedRun(sessions, id, 'default', 2);
      await backdateRun(sessions, old.id);
      await sessions.sweeper.runOnce();
      const chat = createChatStore({ sessions });
      const body = await (await chat.streamRun(id, old.id, { signal: AbortSignal.timeout(20_000) })).text();
      expect(body).toContain('"type":"finish"');
      expect(body).not.toContain('w0');
      expect(body.trimEnd().endsWith('data: [DONE]')).toBe(true);
    });

    it('does not prune output younger than the retention, and a runner cannot emit gap', async () => {
      const tenant = `gap-${uniqueToken()}`;
      const { id } = await sessions.create({}, { tenant });
      await finishedRun(sessions, id, tenant, 2);
      await finishedRun(sessions, id, tenant, 2);
      await sessions.sweeper.runOnce();
      const events = await collect(sessions.runs.stream(id, { tenant, after: 0 }));
      expect(events[0]).toMatchObject({ type: 'status', seq: 1 });
      expect(events.some((e) => e.type === 'gap')).toBe(false);

      let refused: unknown = null;
      const run = await sessions.runs.start(id, async (r) => {
        try {
          await r.emit({ type: 'gap', data: {} });
        } catch (err) {
          refused = err;
        }
      }, { tenant });
      await sessions.runs.wait(id, run.id, { tenant });
      expect(refused).toMatchObject({ code: 'validation_failed' });
    });

    it('prunes old events from the outbox, and a feed reader from before gets gap first', async () => {
      const tenant = `gap-${uniqueToken()}`;
      const old = await sessions.create({ title: 'old' }, { tenant });
      await sessions.update(old.id, { title: 'older' }, { tenant });
      const db = internals(sessions).db;
      const [{ max } = { max: 0 }] = await db.query<{ max: number }>('SELECT max(id)::int AS max FROM outbox WHERE tenant_id = $1', [tenant]);
      // Without a broker nothing is published: the retention takes unpublished rows by age.
      await db.query(`UPDATE outbox SET created_at = now() - interval '2 hours', published_at = NULL WHERE tenant_id = $1`, [tenant]);
      const kept = await sessions.create({ title: 'new' }, { tenant });

      const pass = await sessions.sweeper.runOnce();
      expect(pass.prune_outbox).toBeGreaterThanOrEqual(2);

      const controller = new AbortController();
      const seen: EventEnvelope[] = [];
      for await (const e of sessions.events.subscribe({ tenant, after: 0, signal: controller.signal, types: ['session.created'] })) {
        seen.push(e);
        if (e.type === 'session.created') break;
      }
      expect(seen[0]).toMatchObject({ type: 'gap', id: max, tenantId: tenant, data: { from: 1, to: max, reason: 'retention' } });
      expect(seen[1]).toMatchObject({ type: 'session.created', sessionId: kept.id });
      expect(seen).toHaveLength(2);

      // From the gap's id on: no gap again.
      const again: EventEnvelope[] = [];
      for await (const e of sessions.events.subscribe({ tenant, after: max })) {
        again.push(e);
        break;
      }
      expect(again[0]).toMatchObject({ type: 'session.created', sessionId: kept.id });

      // Erasing the tenant leaves no row that names it, its pruned horizon included.
      expect(await db.query('SELECT 1 FROM pruned_events WHERE tenant_id = $1', [tenant])).toHaveLength(1);
      await sessions.admin.eraseTenant(tenant);
      expect(await db.query('SELECT 1 FROM pruned_events WHERE tenant_id = $1', [tenant])).toHaveLength(0);
    });
  });
}

describe.skipIf(!modeReady(MODES.find((m) => m.name === 'postgres+redis') ?? MODES[0]!, 'runs/gap (http)'))('replay gaps over HTTP and the typed client', () => {
  const mode = MODES.find((m) => m.name === 'postgres+redis') ?? MODES[0]!;
  let storage: Awaited<ReturnType<typeof mode.prepare>>;
  let sessions: Sessions;
  let app: FastifyInstance;
  let base: string;

  beforeAll(async () => {
    storage = await mode.prepare();
    sessions = await storage.open(RETENTION);
    app = await buildApp({ sessions });
    base = await app.listen({ port: 0, host: '127.0.0.1' });
  });

  afterAll(async () => {
    await app?.close();
    await sessions?.close();
    await storage?.dispose();
  });

  const headers = { authorization: `Bearer ${ADMIN}` };

  it('GET /stream and client.runs.stream: gap first (id = its `to`), then the retained output', async () => {
    const { id } = await sessions.create({});
    const first = await finishedRun(sessions, id, 'default', 3);
    const latest = await finishedRun(sessions, id, 'default', 2);
    await backdateRun(sessions, first.id);
    expect((await sessions.sweeper.runOnce()).prune_output).toBeGreaterThanOrEqual(1);
    const to = (latest.startSeq ?? 0) - 1;

    const sse = await readSse(`${base}/v1/sessions/${id}/stream?after=0`, { headers, timeoutMs: 20_000 });
    expect(sse.events[0]).toMatchObject({ id: String(to), event: 'gap', data: { type: 'gap', seq: to, data: { from: 1, to, reason: 'retention' } } });
    expect(sse.events[1]).toMatchObject({ id: String(to + 1), event: 'status' });
    expect(sse.events.at(-1)).toMatchObject({ event: 'done' });
    // Last-Event-ID = the gap's id: the rest, no gap again.
    const resumed = await readSse(`${base}/v1/sessions/${id}/stream`, { headers: { ...headers, 'last-event-id': String(to) }, timeoutMs: 20_000 });
    expect(resumed.events.map((e) => e.id)).toEqual(sse.events.slice(1).map((e) => e.id));

    const client = new AgentSessionsClient({ baseUrl: base, apiKey: ADMIN });
    const viaClient = [];
    for await (const e of client.runs.stream(id, { lastEventId: 0 })) viaClient.push(e);
    expect(viaClient[0]).toMatchObject({ type: 'gap', seq: to, data: { from: 1, to, reason: 'retention' } });
    expect(viaClient.at(-1)).toMatchObject({ type: 'done' });
  });

  it('GET /v1/events and client.events: gap first (id = its `to`), then the retained events', async () => {
    const tenant = `gap-${uniqueToken()}`;
    const tenantKey = await internals(sessions).apiKeys.create({ tenant, scopes: ['read', 'write'] });
    await sessions.create({ title: 'old' }, { tenant });
    const db = internals(sessions).db;
    const [{ max } = { max: 0 }] = await db.query<{ max: number }>('SELECT max(id)::int AS max FROM outbox WHERE tenant_id = $1', [tenant]);
    await db.query(`UPDATE outbox SET created_at = now() - interval '2 hours', published_at = NULL WHERE tenant_id = $1`, [tenant]);
    const kept = await sessions.create({ title: 'new' }, { tenant });
    expect((await sessions.sweeper.runOnce()).prune_outbox).toBeGreaterThanOrEqual(1);

    const auth = { authorization: `Bearer ${tenantKey.key}` };
    const sse = await readSse(`${base}/v1/events`, { headers: { ...auth, 'last-event-id': '0' }, maxEvents: 2, timeoutMs: 20_000 });
    expect(sse.events[0]).toMatchObject({ id: String(max), event: 'gap', data: { id: max, type: 'gap', tenant_id: tenant, data: { from: 1, to: max, reason: 'retention' } } });
    expect(sse.events[1]).toMatchObject({ event: 'session.created', data: { session_id: kept.id } });

    const client = new AgentSessionsClient({ baseUrl: base, apiKey: tenantKey.key });
    const seen = [];
    for await (const e of client.events({ after: 0 })) {
      seen.push(e);
      if (seen.length === 2) break;
    }
    expect(seen.map((e) => e.type)).toEqual(['gap', 'session.created']);
    expect(seen[0]).toMatchObject({ id: max, data: { from: 1, to: max, reason: 'retention' } });
  });
});
