/**
 * Workers end to end (issue 12, must show): real `agent-sessions serve` processes on one fresh
 * PostgreSQL database and one Redis prefix. One worker process serves the agent (AGENT_COMMAND =
 * test/fixtures/script-agent.mjs, which prints the events its input asks for, a delay apart)
 * and two API-only processes (SERVE_AGENTS=false) take the requests:
 *
 * - runs posted to the API processes execute on the worker (the run's owner is the worker's
 *   instance id; the POST was answered by an API process, X-Instance-Id);
 * - the worker is SIGKILLed mid-run: a run with on_owner_lost `retry` restarts on a second
 *   worker and completes, its output carrying a `restarted` event; with `fail` it ends
 *   failed/owner_lost;
 * - a worker gets SIGTERM mid-run and drains: a run that ends within DRAIN_TIMEOUT_MS
 *   completes there, a `retry` run that does not is handed back and completes on another
 *   worker, a `fail` run ends failed/owner_shutdown.
 */
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentSessionsClient } from '../../src/client/index.js';
import type { OutputEventJson, RunJson } from '../../src/client/types.js';
import { startServer, type ServerProcess } from '../setup/server-process.js';
import { freshDatabase, requireServices, serviceUrl, uniqueKeyPrefix, uniqueToken, type FreshDatabase } from '../setup/harness.js';
import { waitFor } from './support.js';

const ADMIN = `workers-admin-${uniqueToken()}`;
const FIXTURE = fileURLToPath(new URL('../fixtures/script-agent.mjs', import.meta.url));
const ready = requireServices(['postgres', 'redis'], 'runs/workers end to end');

/** The fixture's input: `count` text events `delayMs` apart. */
function script(count: number, delayMs: number): Record<string, unknown> {
  return { events: Array.from({ length: count }, (_, i) => ({ type: 'text', data: { text: `tick ${i}` } })), delay_ms: delayMs };
}

describe.skipIf(!ready)('runs/workers end to end (postgres+redis)', () => {
  let db: FreshDatabase | null = null;
  let env: Record<string, string> = {};
  const servers = new Map<string, ServerProcess>();
  const client = (name: string) => new AgentSessionsClient({ baseUrl: (servers.get(name) as ServerProcess).url, apiKey: ADMIN });

  async function start(name: string, extra: Record<string, string> = {}): Promise<void> {
    servers.set(name, await startServer({ env: { ...env, INSTANCE_ID: name, ...extra }, timeoutMs: 90_000 }));
  }

  beforeAll(async () => {
    db = await freshDatabase();
    env = {
      DATABASE_URL: db.url,
      REDIS_URL: serviceUrl('redis'),
      KEY_PREFIX: uniqueKeyPrefix(),
      ADMIN_API_KEY: ADMIN,
      DATABASE_POOL_MAX: '5',
      // Short, so that a killed worker's runs are found soon; not shorter: a worker that has
      // just started (its modules still loading) must keep renewing on a loaded machine.
      RUN_LEASE_MS: '3000',
      RUN_SWEEP_INTERVAL_MS: '300',
      RUN_CLAIM_INTERVAL_MS: '300',
      AGENT_COMMAND: `"${process.execPath}" "${FIXTURE}"`,
      AGENT_INTERRUPT_GRACE_MS: '500',
      AGENT_KILL_GRACE_MS: '500',
      DRAIN_TIMEOUT_MS: '2500',
    };
    // The first start migrates; the others then start together.
    await start('W1');
    await Promise.all([start('API1', { SERVE_AGENTS: 'false' }), start('API2', { SERVE_AGENTS: 'false' })]);
  }, 180_000);

  afterAll(async () => {
    await Promise.all([...servers.values()].map((s) => s.stop('SIGKILL').catch(() => undefined)));
    await db?.drop();
  });

  /** Posts a run to an API process over plain HTTP: the run and the instance that answered. */
  async function post(api: string, sessionId: string, body: Record<string, unknown>): Promise<{ run: RunJson; answeredBy: string | null }> {
    const res = await fetch(`${(servers.get(api) as ServerProcess).url}/v1/sessions/${sessionId}/runs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    expect(res.status).toBeLessThan(300);
    return { run: (await res.json()) as RunJson, answeredBy: res.headers.get('x-instance-id') };
  }

  async function ended(sessionId: string, runId: string, timeoutMs = 30_000): Promise<RunJson> {
    let run: RunJson | null = null;
    await waitFor(
      async () => {
        run = await client('API1').runs.get(sessionId, runId);
        return run.status !== 'running' && run.status !== 'queued';
      },
      timeoutMs,
      `run ${runId} to end`,
    );
    return run as unknown as RunJson;
  }

  /** The session's whole output, up to the first terminal event. */
  async function output(sessionId: string): Promise<OutputEventJson[]> {
    const events: OutputEventJson[] = [];
    for await (const e of client('API2').runs.stream(sessionId, { lastEventId: 0, maxReconnects: 0, signal: AbortSignal.timeout(30_000) })) {
      events.push(e);
    }
    return events;
  }

  async function running(sessionId: string, runId: string, owner: string): Promise<void> {
    await waitFor(
      async () => {
        const r = await client('API2').runs.get(sessionId, runId);
        return r.status === 'running' && r.owner === owner;
      },
      20_000,
      `run ${runId} running on ${owner}`,
    );
  }

  it('runs posted to the API-only processes execute on the worker', async () => {
    const posted = await Promise.all(
      ['API1', 'API2', 'API1', 'API2'].map(async (api) => {
        const session = await client(api).create();
        return { api, session: session.id, ...(await post(api, session.id, { input: script(5, 10), agent: 'default' })) };
      }),
    );
    for (const p of posted) {
      expect(p.answeredBy).toBe(p.api);
      // Nobody serves the agent on the API process: queued for a worker.
      expect(p.run).toMatchObject({ agent: 'default', status: 'queued', owner: null });
    }
    for (const p of posted) {
      const done = await ended(p.session, p.run.id);
      expect(done).toMatchObject({ status: 'completed', owner: 'W1', attempts: 0 });
      const events = await output(p.session);
      expect(events.map((e) => e.type)).toEqual(['status', 'text', 'text', 'text', 'text', 'text', 'done']);
    }
  });

  it('SIGKILL of the worker: a retry run restarts on a second worker and completes; a fail run ends owner_lost', async () => {
    const retry = (await client('API1').create()).id;
    const fail = (await client('API2').create()).id;
    const r = await post('API1', retry, { input: script(30, 100), on_owner_lost: 'retry', max_retries: 1 });
    const f = await post('API2', fail, { input: script(30, 100) });
    expect(r.run).toMatchObject({ on_owner_lost: 'retry', max_retries: 1 });
    expect(f.run).toMatchObject({ on_owner_lost: 'fail' });
    await running(retry, r.run.id, 'W1');
    await running(fail, f.run.id, 'W1');
    await (servers.get('W1') as ServerProcess).stop('SIGKILL');
    await start('W2');
    const failed = await ended(fail, f.run.id);
    expect(failed).toMatchObject({ status: 'failed', end_reason: 'owner_lost', owner: 'W1' });
    const done = await ended(retry, r.run.id, 60_000);
    expect(done).toMatchObject({ status: 'completed', end_reason: 'completed', owner: 'W2', attempts: 1 });
    const events = await output(retry);
    const restarted = events.find((e) => e.type === 'restarted');
    expect(restarted?.data).toEqual({ run_id: r.run.id, attempt: 1, reason: 'owner_lost' });
    // The restart runs the agent again from its input: all 30 ticks after the restart.
    const after = events.slice(events.indexOf(restarted as OutputEventJson));
    expect(after.filter((e) => e.type === 'text')).toHaveLength(30);
    expect(events.at(-1)).toMatchObject({ type: 'done', run_id: r.run.id });
    // The sessions were repaired.
    for (const id of [retry, fail]) expect((await client('API1').get(id)).status).toBe('idle');
  });

  it('SIGTERM drains the worker: a run that ends in time completes, a retry run is handed back, a fail run ends owner_shutdown', { timeout: 120_000 }, async () => {
    const quick = (await client('API1').create()).id;
    const slow = (await client('API2').create()).id;
    const slowFail = (await client('API1').create()).id;
    const q = await post('API1', quick, { input: script(10, 100) });
    // Long enough to outlast W3's start and W2's drain on a loaded machine (a 6 s run once
    // completed before the drain ended).
    const s = await post('API2', slow, { input: script(150, 100), on_owner_lost: 'retry', max_retries: 2 });
    const sf = await post('API1', slowFail, { input: script(150, 100) });
    for (const [id, run] of [[quick, q], [slow, s], [slowFail, sf]] as const) await running(id, run.run.id, 'W2');
    await start('W3');
    const stopping = (servers.get('W2') as ServerProcess).stop('SIGTERM');
    expect(await ended(quick, q.run.id)).toMatchObject({ status: 'completed', owner: 'W2' });
    expect(await ended(slowFail, sf.run.id)).toMatchObject({ status: 'failed', end_reason: 'owner_shutdown', owner: 'W2' });
    expect(await stopping).toBe(0);
    const handedBack = await ended(slow, s.run.id, 60_000);
    expect(handedBack).toMatchObject({ status: 'completed', owner: 'W3', attempts: 1 });
    const events = await output(slow);
    expect(events.find((e) => e.type === 'restarted')?.data).toEqual({ run_id: s.run.id, attempt: 1, reason: 'owner_shutdown' });
    expect(servers.get('W2')?.stderr() ?? '').not.toMatch(/"level":(50|60)/);
  });
});
