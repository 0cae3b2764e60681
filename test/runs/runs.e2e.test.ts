/**
 * End to end: real `agent-sessions serve` processes over real HTTP and SSE, the command
 * runner executing test/fixtures/echo-agent.mjs.
 *
 * - postgres+redis: three servers A, B, C on one fresh database and one Redis prefix
 * - postgres (no Redis): the same three servers, signals and wake-ups over LISTEN/NOTIFY
 * - embedded: one server on PGlite
 *
 * Shown in each: a run started through A is streamed through B, the connection is cut and
 * reopened on C with Last-Event-ID (no gap, no duplicate); interrupts sent to C stop the
 * run on its owner (latency printed as p50/p90/p99) and the next run is not interrupted;
 * input sent to B reaches the command-runner child on A; the owner is SIGKILLed mid-run
 * and the run ends failed/owner_lost with the terminal event on open streams. Stream
 * throughput through SSE is printed too.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type ServerProcess } from '../setup/server-process.js';
import { freshDatabase, modeReady, serviceUrl, uniqueKeyPrefix, uniqueToken, MODES, type FreshDatabase, type ModeName } from './support.js';
import { readSse, type SseEvent } from './sse-client.js';

const ADMIN = `e2e-admin-${uniqueToken()}`;
const HEADERS = { authorization: `Bearer ${ADMIN}` };
const FIXTURE = fileURLToPath(new URL('../fixtures/echo-agent.mjs', import.meta.url));
const LEASE_MS = 1_500;
const SWEEP_MS = 500;

const now = () => performance.timeOrigin + performance.now();

async function call<T = Record<string, unknown>>(server: ServerProcess, method: string, url: string, body?: unknown): Promise<{ status: number; json: T }> {
  const res = await fetch(`${server.url}${url}`, {
    method,
    headers: { ...HEADERS, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, json: (text ? JSON.parse(text) : null) as T };
}

function eventData(e: SseEvent | undefined): Record<string, unknown> {
  return ((e?.data as { data?: unknown } | undefined)?.data ?? {}) as Record<string, unknown>;
}

function expectContiguous(events: SseEvent[]): void {
  const seqs = events.map((e) => Number(e.id));
  expect(seqs).toEqual(seqs.map((_, i) => (seqs[0] ?? 0) + i));
}

function percentile(sorted: number[], q: number): number {
  return sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)] ?? NaN;
}

function distribution(values: number[]): string {
  const s = [...values].sort((x, y) => x - y);
  const f = (v: number) => v.toFixed(1);
  return `n=${s.length} p50=${f(percentile(s, 0.5))} ms p90=${f(percentile(s, 0.9))} ms p99=${f(percentile(s, 0.99))} ms max=${f(s.at(-1) ?? NaN)} ms`;
}

interface Plan {
  mode: ModeName;
  servers: number;
  interrupts: number;
  env: (db: FreshDatabase | null, dataDir: string) => Record<string, string>;
}

const PLANS: Plan[] = [
  {
    mode: 'postgres+redis',
    servers: 3,
    interrupts: 50,
    env: (db) => ({ DATABASE_URL: db?.url ?? '', REDIS_URL: serviceUrl('redis'), KEY_PREFIX: uniqueKeyPrefix() }),
  },
  { mode: 'postgres', servers: 3, interrupts: 30, env: (db) => ({ DATABASE_URL: db?.url ?? '' }) },
  { mode: 'embedded', servers: 1, interrupts: 20, env: (_db, dataDir) => ({ DATA_DIR: dataDir }) },
];

for (const plan of PLANS) {
  const mode = MODES.find((m) => m.name === plan.mode);
  const ready = mode ? modeReady(mode, `runs end to end/${plan.mode}`) : false;
  describe.skipIf(!ready)(`runs end to end/${plan.mode}`, () => {
    let db: FreshDatabase | null = null;
    let dataDir = '';
    const servers: ServerProcess[] = [];
    // With one server (embedded) A, B and C are the same process.
    const A = () => servers[0] as ServerProcess;
    const B = () => servers[1 % servers.length] as ServerProcess;
    const C = () => servers[2 % servers.length] as ServerProcess;

    beforeAll(async () => {
      if (plan.mode !== 'embedded') db = await freshDatabase();
      dataDir = mkdtempSync(path.join(os.tmpdir(), 'as-e2e-'));
      const env = {
        ...plan.env(db, dataDir),
        ADMIN_API_KEY: ADMIN,
        RUN_LEASE_MS: String(LEASE_MS),
        RUN_SWEEP_INTERVAL_MS: String(SWEEP_MS),
        SSE_HEARTBEAT_MS: '1000',
        AGENT_COMMAND: `"${process.execPath}" "${FIXTURE}"`,
        AGENT_INTERRUPT_GRACE_MS: '1000',
        AGENT_KILL_GRACE_MS: '1000',
      };
      // The first start migrates; the others then start together.
      servers.push(await startServer({ env: { ...env, INSTANCE_ID: 'A' }, timeoutMs: 90_000 }));
      const rest = await Promise.all(
        ['B', 'C'].slice(0, plan.servers - 1).map((name) => startServer({ env: { ...env, INSTANCE_ID: name }, timeoutMs: 90_000 })),
      );
      servers.push(...rest);
    });

    afterAll(async () => {
      await Promise.all(servers.map((s) => s.stop().catch(() => undefined)));
      await db?.drop();
      if (dataDir) rmSync(dataDir, { recursive: true, force: true });
    });

    async function newSession(): Promise<string> {
      const res = await call<{ id: string }>(A(), 'POST', '/v1/sessions', {});
      expect(res.status).toBe(201);
      return res.json.id;
    }

    it('streams a run started on A through B, then resumes on C with Last-Event-ID: no gap, no duplicate', async () => {
      const id = await newSession();
      const started = await call<{ id: string; status: string; owner: string }>(A(), 'POST', `/v1/sessions/${id}/runs`, {
        input: { mode: 'stream', count: 60, delay_ms: 15 },
      });
      expect(started.status).toBe(202);
      expect(started.json.owner).toBe('A');
      const onB = await readSse(`${B().url}/v1/sessions/${id}/stream`, { headers: HEADERS, maxEvents: 20 });
      expect(onB.ended).toBe(false);
      const onC = await readSse(`${C().url}/v1/sessions/${id}/stream`, {
        headers: { ...HEADERS, 'last-event-id': onB.events.at(-1)?.id ?? '' },
      });
      expect(onC.ended).toBe(true);
      const all = [...onB.events, ...onC.events];
      expectContiguous(all);
      expect(all).toHaveLength(62);
      expect(all[0]?.event).toBe('status');
      expect(all.filter((e) => e.event === 'text').map((e) => eventData(e).text)).toEqual(
        Array.from({ length: 60 }, (_, i) => `word ${i}`),
      );
      expect(all.at(-1)).toMatchObject({ event: 'done' });
      expect(eventData(all.at(-1))).toMatchObject({ status: 'completed', run_id: started.json.id });
    });

    it(`interrupts from C stop the run on its owner (${plan.interrupts} runs); the next run is not interrupted`, async () => {
      const id = await newSession();
      const clientLatency: number[] = [];
      const serverLatency: number[] = [];
      for (let i = 0; i < plan.interrupts; i++) {
        const run = await call<{ id: string; status: string }>(A(), 'POST', `/v1/sessions/${id}/runs`, {
          input: { mode: 'stream', count: 100_000, delay_ms: 20 },
        });
        // A leftover marker would stop this run before its first word: it must get going.
        expect(run.json.status).toBe('running');
        let t0 = 0;
        let sent: Promise<{ status: number }> | null = null;
        const { events } = await readSse(`${B().url}/v1/sessions/${id}/stream`, {
          headers: HEADERS,
          onEvent: (e) => {
            if (e.event === 'text' && sent === null) {
              t0 = now();
              sent = call(C(), 'POST', `/v1/sessions/${id}/interrupt`);
            }
          },
        });
        expect(sent).not.toBeNull();
        expect((await (sent as unknown as Promise<{ status: number }>)).status).toBe(202);
        const done = eventData(events.at(-1));
        expect(done).toMatchObject({ status: 'interrupted', run_id: run.json.id });
        const interrupt = done.interrupt as { requested_at: number | null; aborted_at: number; via: string };
        clientLatency.push(interrupt.aborted_at - t0);
        // When the owner's heartbeat saw the flag before the signal arrived, there is no signal time.
        if (interrupt.requested_at !== null) serverLatency.push(interrupt.aborted_at - interrupt.requested_at);
      }
      const last = await call<{ id: string }>(A(), 'POST', `/v1/sessions/${id}/runs`, { input: { mode: 'stream', count: 5, delay_ms: 5 } });
      const { events } = await readSse(`${B().url}/v1/sessions/${id}/stream`, { headers: HEADERS });
      expect(eventData(events.at(-1))).toMatchObject({ status: 'completed', run_id: last.json.id });
      expect(events.filter((e) => e.event === 'text')).toHaveLength(5);
      console.log(
        `[${plan.mode}] interrupt latency, POST /interrupt on C -> abort on A: ${distribution(clientLatency)}\n` +
          `[${plan.mode}] interrupt latency, flag committed on C -> abort on A (signal path): ${distribution(serverLatency)}`,
      );
      const p99 = percentile([...clientLatency].sort((x, y) => x - y), 0.99);
      // Generous bound (shared 2-core machine); PostgreSQL-only must at least beat one heartbeat.
      expect(p99).toBeLessThan(plan.mode === 'postgres' ? LEASE_MS / 3 + 500 : 1_000);
    });

    it('input sent to B reaches the command-runner child on A', async () => {
      const id = await newSession();
      const run = await call<{ id: string; owner: string }>(A(), 'POST', `/v1/sessions/${id}/runs`, { input: { mode: 'echo' } });
      expect(run.json.owner).toBe('A');
      let readySeen!: () => void;
      const ready = new Promise<void>((r) => (readySeen = r));
      const reading = readSse(`${C().url}/v1/sessions/${id}/stream`, {
        headers: HEADERS,
        onEvent: (e) => {
          if (e.event === 'status' && eventData(e).state === 'ready') readySeen();
        },
      });
      await ready;
      for (const line of ['hello from B', 'second line']) {
        const sent = await call(B(), 'POST', `/v1/sessions/${id}/input`, { input: line });
        expect(sent.status).toBe(202);
      }
      await call(B(), 'POST', `/v1/sessions/${id}/input`, { input: 'bye' });
      const { events } = await reading;
      const echoes = events.filter((e) => e.event === 'echo').map((e) => eventData(e));
      expect(echoes.map((e) => e.line), JSON.stringify(events.map((e) => e.data))).toEqual(['hello from B', 'second line']);
      expect(new Set(echoes.map((e) => e.pid)).size).toBe(1);
      expect(eventData(events.at(-1))).toMatchObject({ status: 'completed' });
    });

    it('measures stream throughput through SSE', async () => {
      const id = await newSession();
      const count = 5_000;
      const t0 = now();
      await call(A(), 'POST', `/v1/sessions/${id}/runs`, { input: { mode: 'stream', count, delay_ms: 0 } });
      const { events } = await readSse(`${B().url}/v1/sessions/${id}/stream`, { headers: HEADERS });
      const elapsed = (events.at(-1)?.at ?? now()) - (events[0]?.at ?? t0);
      expectContiguous(events);
      expect(events).toHaveLength(count + 2);
      console.log(
        `[${plan.mode}] SSE throughput: ${count + 2} events in ${elapsed.toFixed(0)} ms = ` +
          `${Math.round(((count + 2) / elapsed) * 1000)} events/s (run started on A, read on B; ` +
          `${(now() - t0).toFixed(0)} ms from POST to terminal event)`,
      );
    });

    it.skipIf(plan.servers < 3)('SIGKILL of the owner: the run ends failed/owner_lost, open streams get the terminal event, a new run starts', async () => {
      const id = await newSession();
      const run = await call<{ id: string; owner: string }>(A(), 'POST', `/v1/sessions/${id}/runs`, {
        input: { mode: 'stream', count: 100_000, delay_ms: 20 },
      });
      expect(run.json.owner).toBe('A');
      let words = 0;
      let killedAt = 0;
      const onB = readSse(`${B().url}/v1/sessions/${id}/stream`, { headers: HEADERS, onEvent: (e) => void (e.event === 'text' && words++) });
      const onC = readSse(`${C().url}/v1/sessions/${id}/stream`, { headers: HEADERS });
      while (words < 10) await new Promise((r) => setTimeout(r, 20));
      await A().stop('SIGKILL');
      killedAt = now();
      const [b, c] = await Promise.all([onB, onC]);
      const detectedMs = Math.max(b.events.at(-1)?.at ?? 0, c.events.at(-1)?.at ?? 0) - killedAt;
      for (const r of [b, c]) {
        expect(r.ended).toBe(true);
        expectContiguous(r.events);
        expect(r.events.at(-1)?.event).toBe('error');
        expect(eventData(r.events.at(-1))).toMatchObject({ status: 'failed', reason: 'owner_lost', run_id: run.json.id });
      }
      console.log(`[${plan.mode}] owner SIGKILL -> terminal event on readers: ${detectedMs.toFixed(0)} ms (lease ${LEASE_MS} ms + sweep ${SWEEP_MS} ms)`);
      expect(detectedMs).toBeLessThan(LEASE_MS + SWEEP_MS + 5_000);
      const got = await call<{ status: string; end_reason: string }>(B(), 'GET', `/v1/sessions/${id}/runs/${run.json.id}`);
      expect(got.json).toMatchObject({ status: 'failed', end_reason: 'owner_lost' });
      // The sweep that did it is counted in /v1/stats on whichever instance claimed the run.
      type Stats = { sweeps: Record<string, { affected: number }> };
      const swept = await Promise.all([B(), C()].map((s) => call<Stats>(s, 'GET', '/v1/stats')));
      expect(swept.reduce((n, r) => n + (r.json.sweeps.finalize_orphaned_runs?.affected ?? 0), 0)).toBeGreaterThanOrEqual(1);
      const next = await call<{ id: string; status: string; owner: string }>(B(), 'POST', `/v1/sessions/${id}/runs`, {
        input: { mode: 'stream', count: 3, delay_ms: 1 },
      });
      expect(next.status).toBe(202);
      expect(next.json).toMatchObject({ status: 'running', owner: 'B' });
      const { events } = await readSse(`${C().url}/v1/sessions/${id}/stream`, { headers: HEADERS });
      expect(eventData(events.at(-1))).toMatchObject({ status: 'completed', run_id: next.json.id });
    });
  });
}


