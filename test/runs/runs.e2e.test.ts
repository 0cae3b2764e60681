/**
 * End to end: real `agent-sessions serve` processes over real HTTP and SSE, driven through the
 * HTTP client (src/client) with resume turned off, so a stream cut short fails; the command
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
import { AgentSessionsClient } from '../../src/client/index.js';
import type { OutputEventJson } from '../../src/client/types.js';
import { startServer, type ServerProcess } from '../setup/server-process.js';
import { freshDatabase, modeReady, serviceUrl, uniqueKeyPrefix, uniqueToken, MODES, type FreshDatabase, type ModeName } from './support.js';

const ADMIN = `e2e-admin-${uniqueToken()}`;
const FIXTURE = fileURLToPath(new URL('../fixtures/echo-agent.mjs', import.meta.url));
const LEASE_MS = 1_500;
const SWEEP_MS = 500;

const now = () => performance.timeOrigin + performance.now();

/** An output event and when it arrived (ms, performance.timeOrigin-based wall clock). */
type Received = OutputEventJson & { at: number };

interface ReadOptions {
  lastEventId?: number;
  /** Stop (closing the connection) after this many events. */
  maxEvents?: number;
  onEvent?: (e: Received) => void;
}

/**
 * Reads a session's output through the client until the terminal event (or `maxEvents`).
 * No silent reconnect: a stream the server cuts short fails the test.
 */
async function read(client: AgentSessionsClient, sessionId: string, options: ReadOptions = {}): Promise<Received[]> {
  const events: Received[] = [];
  const stream = client.runs.stream(sessionId, {
    lastEventId: options.lastEventId,
    maxReconnects: 0,
    signal: AbortSignal.timeout(60_000),
  });
  for await (const e of stream) {
    const received = { ...e, at: now() };
    events.push(received);
    options.onEvent?.(received);
    if (options.maxEvents !== undefined && events.length >= options.maxEvents) break;
  }
  return events;
}

function eventData(e: OutputEventJson | undefined): Record<string, unknown> {
  return (e?.data ?? {}) as Record<string, unknown>;
}

function expectContiguous(events: OutputEventJson[]): void {
  const seqs = events.map((e) => e.seq);
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
    const clients: AgentSessionsClient[] = [];
    // With one server (embedded) A, B and C are the same process.
    const A = () => clients[0] as AgentSessionsClient;
    const B = () => clients[1 % clients.length] as AgentSessionsClient;
    const C = () => clients[2 % clients.length] as AgentSessionsClient;

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
      const rest = await Promise.allSettled(
        ['B', 'C'].slice(0, plan.servers - 1).map((name) => startServer({ env: { ...env, INSTANCE_ID: name }, timeoutMs: 90_000 })),
      );
      // Every server that did start is stopped in afterAll, even if another one failed.
      for (const r of rest) if (r.status === 'fulfilled') servers.push(r.value);
      const failed = rest.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
      clients.push(...servers.map((server) => new AgentSessionsClient({ baseUrl: server.url, apiKey: ADMIN })));
    });

    afterAll(async () => {
      await Promise.all(servers.map((s) => s.stop().catch(() => undefined)));
      await db?.drop();
      if (dataDir) rmSync(dataDir, { recursive: true, force: true });
    });

    async function newSession(): Promise<string> {
      return (await A().create()).id;
    }

    it('streams a run started on A through B, then resumes on C with Last-Event-ID: no gap, no duplicate', async () => {
      const id = await newSession();
      const started = await A().runs.start(id, { mode: 'stream', count: 60, delay_ms: 15 });
      expect(started.owner).toBe('A');
      const onB = await read(B(), id, { maxEvents: 20 });
      expect(onB.map((e) => e.type)).not.toContain('done');
      const onC = await read(C(), id, { lastEventId: onB.at(-1)?.seq });
      const all = [...onB, ...onC];
      expectContiguous(all);
      expect(all).toHaveLength(62);
      expect(all[0]?.type).toBe('status');
      expect(all.filter((e) => e.type === 'text').map((e) => eventData(e).text)).toEqual(
        Array.from({ length: 60 }, (_, i) => `word ${i}`),
      );
      expect(all.at(-1)).toMatchObject({ type: 'done', run_id: started.id });
      expect(eventData(all.at(-1))).toMatchObject({ status: 'completed', run_id: started.id });
    });

    it(`interrupts from C stop the run on its owner (${plan.interrupts} runs); the next run is not interrupted`, async () => {
      const id = await newSession();
      const clientLatency: number[] = [];
      const serverLatency: number[] = [];
      let viaSignal = 0;
      for (let i = 0; i < plan.interrupts; i++) {
        const run = await A().runs.start(id, { mode: 'stream', count: 100_000, delay_ms: 20 });
        // A leftover marker would stop this run before its first word: it must get going.
        expect(run.status).toBe('running');
        let t0 = 0;
        let sent: Promise<{ id: string }> | null = null;
        const events = await read(B(), id, {
          onEvent: (e) => {
            if (e.type === 'text' && sent === null) {
              t0 = now();
              sent = C().runs.interrupt(id);
            }
          },
        });
        expect(sent).not.toBeNull();
        expect(await (sent as unknown as Promise<{ id: string }>)).toMatchObject({ id: run.id });
        const done = eventData(events.at(-1));
        expect(done).toMatchObject({ status: 'interrupted', run_id: run.id });
        const interrupt = done.interrupt as { requested_at: number | null; aborted_at: number; via: string };
        clientLatency.push(interrupt.aborted_at - t0);
        // When the owner's heartbeat saw the flag before the signal arrived, there is no signal time.
        if (interrupt.requested_at !== null) serverLatency.push(interrupt.aborted_at - interrupt.requested_at);
        if (interrupt.via === 'signal') viaSignal++;
      }
      const last = await A().runs.start(id, { mode: 'stream', count: 5, delay_ms: 5 });
      const events = await read(B(), id);
      expect(eventData(events.at(-1))).toMatchObject({ status: 'completed', run_id: last.id });
      expect(events.filter((e) => e.type === 'text')).toHaveLength(5);
      console.log(
        `[${plan.mode}] interrupt latency, POST /interrupt on C -> abort on A: ${distribution(clientLatency)}\n` +
          `[${plan.mode}] interrupt latency, flag committed on C -> abort on A (signal path): ${distribution(serverLatency)}\n` +
          `[${plan.mode}] interrupts delivered by signal: ${viaSignal} of ${plan.interrupts} (the rest by the owner's heartbeat)`,
      );
      // The target (p99 <= 50 ms) is measured and printed above, not asserted: with these
      // runs p99 is the slowest one, which a loaded machine can stall for a second. The
      // fast path is proven by the signal delivering most interrupts (the heartbeat, every
      // RUN_LEASE_MS / 3, wins only when it reads the flag before the signal lands), and the
      // latency bound only catches a path that hangs.
      expect(viaSignal).toBeGreaterThan(plan.interrupts / 2);
      const p99 = percentile([...clientLatency].sort((x, y) => x - y), 0.99);
      expect(p99).toBeLessThan(5_000);
    });

    it('input sent to B reaches the command-runner child on A', async () => {
      const id = await newSession();
      const run = await A().runs.start(id, { mode: 'echo' });
      expect(run.owner).toBe('A');
      let readySeen!: () => void;
      const ready = new Promise<void>((r) => (readySeen = r));
      const reading = read(C(), id, {
        onEvent: (e) => {
          if (e.type === 'status' && eventData(e).state === 'ready') readySeen();
        },
      });
      await ready;
      for (const line of ['hello from B', 'second line']) {
        expect(await B().runs.sendInput(id, line)).toMatchObject({ run_id: run.id });
      }
      await B().runs.sendInput(id, 'bye');
      const events = await reading;
      const echoes = events.filter((e) => e.type === 'echo').map((e) => eventData(e));
      expect(echoes.map((e) => e.line), JSON.stringify(events.map((e) => e.data))).toEqual(['hello from B', 'second line']);
      expect(new Set(echoes.map((e) => e.pid)).size).toBe(1);
      expect(eventData(events.at(-1))).toMatchObject({ status: 'completed' });
    });

    it('measures stream throughput through SSE', async () => {
      const id = await newSession();
      const count = 5_000;
      const t0 = now();
      await A().runs.start(id, { mode: 'stream', count, delay_ms: 0 });
      const events = await read(B(), id);
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
      const run = await A().runs.start(id, { mode: 'stream', count: 100_000, delay_ms: 20 });
      expect(run.owner).toBe('A');
      let words = 0;
      const onB = read(B(), id, { onEvent: (e) => void (e.type === 'text' && words++) });
      const onC = read(C(), id);
      while (words < 10) await new Promise((r) => setTimeout(r, 20));
      await (servers[0] as ServerProcess).stop('SIGKILL');
      const killedAt = now();
      const [b, c] = await Promise.all([onB, onC]);
      const detectedMs = Math.max(b.at(-1)?.at ?? 0, c.at(-1)?.at ?? 0) - killedAt;
      for (const events of [b, c]) {
        expectContiguous(events);
        expect(events.at(-1)?.type).toBe('error');
        expect(eventData(events.at(-1))).toMatchObject({ status: 'failed', reason: 'owner_lost', run_id: run.id });
      }
      console.log(`[${plan.mode}] owner SIGKILL -> terminal event on readers: ${detectedMs.toFixed(0)} ms (lease ${LEASE_MS} ms + sweep ${SWEEP_MS} ms)`);
      expect(detectedMs).toBeLessThan(LEASE_MS + SWEEP_MS + 5_000);
      expect(await B().runs.get(id, run.id)).toMatchObject({ status: 'failed', end_reason: 'owner_lost' });
      // The sweep that did it is counted in /v1/stats on whichever instance claimed the run.
      const swept = await Promise.all([B(), C()].map((s) => s.stats()));
      expect(swept.reduce((n, st) => n + (st.sweeps.finalize_orphaned_runs?.affected ?? 0), 0)).toBeGreaterThanOrEqual(1);
      const next = await B().runs.start(id, { mode: 'stream', count: 3, delay_ms: 1 });
      expect(next).toMatchObject({ status: 'running', owner: 'B' });
      const events = await read(C(), id);
      expect(eventData(events.at(-1))).toMatchObject({ status: 'completed', run_id: next.id });
    });
  });
}


