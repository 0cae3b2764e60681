/**
 * POST /v1/sessions/{id}/interrupt?wait_ms=N across instances: the run executes on server A
 * (the command runner, with a child that takes its time to stop), the interrupt is sent to
 * server B, which answers 200 with the run once it ended, or 202 with the run as it is when
 * N ms passed. Also the library (`sessions.runs.interrupt(id, { waitMs })`, the run on this
 * instance) and the typed client.
 */
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentSessionsClient } from '../../src/client/index.js';
import { createSessions, type Sessions } from '../../src/internal.js';
import { startServer, type ServerProcess } from '../setup/server-process.js';
import { readSse } from './sse-client.js';
import { freshDatabase, modeReady, MODES, serviceUrl, uniqueKeyPrefix, uniqueToken, waitFor, type FreshDatabase } from './support.js';

const ADMIN = `wait-admin-${uniqueToken()}`;
const FIXTURE = fileURLToPath(new URL('../fixtures/slow-stop-agent.mjs', import.meta.url));
const mode = MODES.find((m) => m.name === 'postgres+redis');

interface RunBody {
  id: string;
  status: string;
  owner: string | null;
  ended_at: string | null;
  end_reason: string | null;
  interrupt_requested_at: string | null;
}

describe.skipIf(!mode || !modeReady(mode, 'runs/interrupt-wait'))('interrupt?wait_ms across two servers', () => {
  let db: FreshDatabase | null = null;
  const servers: ServerProcess[] = [];
  let A: ServerProcess;
  let B: ServerProcess;

  beforeAll(async () => {
    db = await freshDatabase();
    const env = {
      DATABASE_URL: db.url,
      REDIS_URL: serviceUrl('redis'),
      KEY_PREFIX: uniqueKeyPrefix(),
      ADMIN_API_KEY: ADMIN,
      AGENT_COMMAND: `"${process.execPath}" "${FIXTURE}"`,
      // The child decides when it stops: no SIGTERM before it did.
      AGENT_INTERRUPT_GRACE_MS: '20000',
      AGENT_KILL_GRACE_MS: '5000',
    };
    servers.push(await startServer({ env: { ...env, INSTANCE_ID: 'A' }, timeoutMs: 90_000 }));
    servers.push(await startServer({ env: { ...env, INSTANCE_ID: 'B' }, timeoutMs: 90_000 }));
    [A, B] = servers as [ServerProcess, ServerProcess];
  });

  afterAll(async () => {
    await Promise.all(servers.map((s) => s.stop().catch(() => undefined)));
    await db?.drop();
  });

  const headers = { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' };

  async function post(server: ServerProcess, path: string, body: unknown = {}): Promise<{ status: number; json: RunBody }> {
    const res = await fetch(`${server.url}${path}`, { method: 'POST', headers, body: JSON.stringify(body) });
    return { status: res.status, json: (await res.json()) as RunBody };
  }

  async function runningOnA(stopMs: number): Promise<{ session: string; run: RunBody }> {
    const session = (await post(A, '/v1/sessions')).json.id;
    const started = await post(A, `/v1/sessions/${session}/runs`, { input: { stop_ms: stopMs } });
    expect(started.status).toBe(201);
    expect(started.json).toMatchObject({ status: 'running', owner: 'A' });
    // The child read its input (it ticks): from now on it takes stop_ms to stop.
    const first = await readSse(`${A.url}/v1/sessions/${session}/stream`, { headers, maxEvents: 2, timeoutMs: 30_000 });
    expect(first.events.map((e) => e.event)).toEqual(['status', 'text']);
    return { session, run: started.json };
  }

  it('200 with the ended run once it stopped on A; 202 with the running run when wait_ms passed first', async () => {
    const { session, run } = await runningOnA(1_500);

    const t0 = Date.now();
    const early = await post(B, `/v1/sessions/${session}/interrupt?wait_ms=300`);
    const earlyMs = Date.now() - t0;
    expect(early.status).toBe(202);
    expect(early.json).toMatchObject({ id: run.id, status: 'running', ended_at: null });
    expect(early.json.interrupt_requested_at).not.toBeNull();
    expect(earlyMs).toBeGreaterThanOrEqual(290);

    const late = await post(B, `/v1/sessions/${session}/interrupt?wait_ms=30000`);
    const lateMs = Date.now() - t0;
    expect(late.status).toBe(200);
    expect(late.json).toMatchObject({ id: run.id, status: 'interrupted', end_reason: 'interrupted' });
    expect(late.json.ended_at).not.toBeNull();
    // Answered when the run ended (the child took 1.5 s to stop), long before wait_ms.
    expect(lateMs).toBeGreaterThanOrEqual(1_400);
    expect(lateMs).toBeLessThan(15_000);
  });

  it('the typed client waits too; a wait_ms out of range is a 400', async () => {
    const { session, run } = await runningOnA(200);
    const client = new AgentSessionsClient({ baseUrl: B.url, apiKey: ADMIN });
    const ended = await client.runs.interrupt(session, { waitMs: 20_000 });
    expect(ended).toMatchObject({ id: run.id, status: 'interrupted' });

    const bad = await fetch(`${B.url}/v1/sessions/${session}/interrupt?wait_ms=60001`, { method: 'POST', headers, body: '{}' });
    expect(bad.status).toBe(400);
    // Nothing runs any more: 409 no_active_run, wait or not.
    const none = await fetch(`${B.url}/v1/sessions/${session}/interrupt?wait_ms=100`, { method: 'POST', headers, body: '{}' });
    expect(none.status).toBe(409);
  });
});

describe('interrupt with waitMs (library, the run on this instance)', () => {
  let sessions: Sessions;

  beforeAll(async () => {
    sessions = await createSessions({ env: { DATA_DIR: ':memory:', RUN_SWEEP_INTERVAL_MS: '0' } });
  });

  afterAll(async () => {
    await sessions?.close();
  });

  it('resolves to the ended run, or to the running one when waitMs passed first', async () => {
    const { id } = await sessions.create({});
    let release: () => void = () => undefined;
    const released = new Promise<void>((r) => {
      release = r;
    });
    // A runner that stops only when the test lets it, whatever the signal says.
    const run = await sessions.runs.start(id, async () => {
      await released;
    });
    await waitFor(async () => (await sessions.runs.get(id, run.id)).status === 'running');

    const early = await sessions.runs.interrupt(id, { waitMs: 50 });
    expect(early).toMatchObject({ id: run.id, status: 'running' });
    const waiting = sessions.runs.interrupt(id, { waitMs: 20_000 });
    release();
    expect(await waiting).toMatchObject({ id: run.id, status: 'interrupted' });

    await expect(sessions.runs.interrupt(id, { waitMs: -1 })).rejects.toMatchObject({ code: 'validation_failed' });
  });
});
