/**
 * Turn admission end to end (issue 12, SPEC §7.1): three `agent-sessions serve` processes on
 * one PostgreSQL database and one Redis prefix, the command runner executing
 * test/fixtures/hold-agent.mjs (echoes every stdin line as an `echo` event; a run whose first
 * line starts with "hold" runs until it reads "release").
 *
 * For each `if_busy` policy: one session kept busy by a holding run, then 200 messages sent
 * concurrently through all three servers (40 lanes of 5: each lane sends its next message once
 * the previous one was answered, so each lane's order is an admission order the outcome must
 * keep), and the outcome checked exactly against the policy. Which server runs a run is not
 * asserted. The order of admission is read back from the outbox (its ids are taken under the
 * session's lock).
 */
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentSessionsClient } from '../../src/client/index.js';
import type { OutputEventJson, RunJson } from '../../src/client/types.js';
import { startServer, type ServerProcess } from '../setup/server-process.js';
import { freshDatabase, MODES, modeReady, serviceUrl, uniqueKeyPrefix, uniqueToken, waitFor, type FreshDatabase } from './support.js';

const ADMIN = `admission-admin-${uniqueToken()}`;
const FIXTURE = fileURLToPath(new URL('../fixtures/hold-agent.mjs', import.meta.url));
const MESSAGES = 200;
const LANES = 40;
const DEBOUNCE_MS = 3_000;

interface Reply {
  i: number;
  status: number;
  body: Record<string, unknown>;
}

interface RunRow {
  id: string;
  status: string;
  inputs: unknown[];
  end_reason: string | null;
  not_before: Date | null;
  started_at: Date | null;
}

const mode = MODES.find((m) => m.name === 'postgres+redis');
const ready = mode ? modeReady(mode, 'admission end to end') : false;

describe.skipIf(!ready)('admission end to end: 200 messages through three servers to one busy session', { timeout: 180_000 }, () => {
  let db: FreshDatabase;
  let sql: pg.Client;
  const servers: ServerProcess[] = [];
  let client: AgentSessionsClient;

  beforeAll(async () => {
    db = await freshDatabase();
    const env = {
      DATABASE_URL: db.url,
      REDIS_URL: serviceUrl('redis'),
      KEY_PREFIX: uniqueKeyPrefix(),
      ADMIN_API_KEY: ADMIN,
      RUN_LEASE_MS: '3000',
      RUNS_QUEUED_PER_SESSION: String(MESSAGES + 10),
      RATE_LIMIT_PER_MINUTE: '1000000',
      AGENT_COMMAND: `"${process.execPath}" "${FIXTURE}"`,
      AGENT_INTERRUPT_GRACE_MS: '1000',
      AGENT_KILL_GRACE_MS: '1000',
    };
    // The first start migrates; the others then start together.
    servers.push(await startServer({ env: { ...env, INSTANCE_ID: 'A' }, timeoutMs: 90_000 }));
    const rest = await Promise.allSettled(['B', 'C'].map((name) => startServer({ env: { ...env, INSTANCE_ID: name }, timeoutMs: 90_000 })));
    for (const r of rest) if (r.status === 'fulfilled') servers.push(r.value);
    const failed = rest.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    client = new AgentSessionsClient({ baseUrl: servers[0]?.url ?? '', apiKey: ADMIN });
    sql = new pg.Client({ connectionString: db.url });
    await sql.connect();
  }, 200_000);

  afterAll(async () => {
    await sql?.end().catch(() => undefined);
    await Promise.all(servers.map((s) => s.stop().catch(() => undefined)));
    await db?.drop();
  });

  const inputOf = (i: number, prefix = 'm') => `${prefix}-${String(i).padStart(3, '0')}`;

  async function post(server: number, path: string, body: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
    const res = await fetch(`${servers[server % servers.length]?.url}${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  }

  /** A session with a holding run (started through A). */
  async function busySession(): Promise<{ id: string; holder: RunJson }> {
    const id = (await client.create({})).id;
    const started = await post(0, `/v1/sessions/${id}/runs`, { input: 'hold' });
    expect(started.status).toBe(201);
    expect(started.body).toMatchObject({ decision: 'started', status: 'running', takes_input: true });
    return { id, holder: started.body as unknown as RunJson };
  }

  /** The 200 messages, 40 lanes at once, each lane in order, spread over the three servers. */
  async function sendAll(id: string, body: (i: number) => Record<string, unknown>): Promise<Reply[]> {
    const replies: Reply[] = [];
    await Promise.all(
      Array.from({ length: LANES }, async (_, lane) => {
        for (let i = lane; i < MESSAGES; i += LANES) {
          const res = await post(i, `/v1/sessions/${id}/runs`, body(i));
          replies.push({ i, ...res });
        }
      }),
    );
    return replies.sort((x, y) => x.i - y.i);
  }

  /** Each lane's messages appear in `sequence` in the order the lane sent them. */
  function expectLaneOrder(sequence: string[], prefix = 'm'): void {
    for (let lane = 0; lane < LANES; lane++) {
      const sent = Array.from({ length: MESSAGES }, (_, i) => i).filter((i) => i % LANES === lane).map((i) => inputOf(i, prefix));
      expect(sequence.filter((x) => sent.includes(x))).toEqual(sent);
    }
  }

  async function runs(id: string): Promise<RunRow[]> {
    const res = await sql.query<RunRow>(
      'SELECT id, status, inputs, end_reason, not_before, started_at FROM runs WHERE session_id = $1 ORDER BY created_at, id',
      [id],
    );
    return res.rows;
  }

  /** Run ids in the order their admission wrote run.queued / run.started (outbox ids are taken under the session lock). */
  async function admissionOrder(id: string): Promise<string[]> {
    const res = await sql.query<{ run_id: string }>(
      `SELECT payload->>'run_id' AS run_id FROM outbox WHERE session_id = $1 AND type IN ('run.queued', 'run.started') ORDER BY id`,
      [id],
    );
    const seen = new Set<string>();
    return res.rows.map((r) => r.run_id).filter((r) => !seen.has(r) && seen.add(r) !== undefined);
  }

  async function release(id: string, runId: string): Promise<void> {
    const sent = await post(1, `/v1/sessions/${id}/input`, { input: 'release', run_id: runId });
    expect(sent.status).toBe(202);
  }

  async function ended(id: string, runId: string): Promise<RunJson> {
    let run: RunJson | null = null;
    await waitFor(
      async () => {
        run = await client.runs.get(id, runId);
        return run.status !== 'running' && run.status !== 'queued';
      },
      60_000,
      `run ${runId} to end`,
    );
    return run as unknown as RunJson;
  }

  /** The lines a run's child echoed, read from its output (its first event to its terminal one). */
  async function echoed(id: string, run: RunJson): Promise<string[]> {
    const events: OutputEventJson[] = [];
    for await (const e of client.runs.stream(id, { lastEventId: (run.start_seq ?? 1) - 1, maxReconnects: 0, signal: AbortSignal.timeout(60_000) })) {
      events.push(e);
    }
    expect(events.at(-1)).toMatchObject({ type: 'done', run_id: run.id });
    return events.filter((e) => e.type === 'echo' && e.run_id === run.id).map((e) => String((e.data as { line: string }).line));
  }

  it('reject: all 200 are refused 409 session_busy; the running run goes on', async () => {
    const { id, holder } = await busySession();
    const replies = await sendAll(id, (i) => ({ input: inputOf(i), if_busy: 'reject' }));
    expect(replies.map((r) => [r.status, r.body.code])).toEqual(replies.map(() => [409, 'session_busy']));
    expect((await runs(id)).map((r) => r.id)).toEqual([holder.id]);
    await release(id, holder.id);
    expect(await echoed(id, await ended(id, holder.id))).toEqual(['hold']);
  });

  it('enqueue: 200 queued runs, each with its one input', async () => {
    const { id, holder } = await busySession();
    const replies = await sendAll(id, (i) => ({ input: inputOf(i), if_busy: 'enqueue' }));
    expect(replies.map((r) => [r.status, r.body.decision, r.body.status])).toEqual(replies.map(() => [201, 'queued', 'queued']));
    expect(new Set(replies.map((r) => r.body.id)).size).toBe(MESSAGES);
    const rows = (await runs(id)).filter((r) => r.id !== holder.id);
    expect(rows).toHaveLength(MESSAGES);
    for (const r of replies) {
      const row = rows.find((x) => x.id === r.body.id);
      expect(row).toMatchObject({ status: 'queued', inputs: [inputOf(r.i)] });
    }
    // The queue's order is the admission order.
    expect(rows.map((r) => r.id)).toEqual((await admissionOrder(id)).filter((r) => r !== holder.id));
    // Done with it: ending the session ends what waited.
    expect((await fetch(`${servers[2]?.url}/v1/sessions/${id}`, { method: 'DELETE', headers: { authorization: `Bearer ${ADMIN}` } })).status).toBe(200);
  });

  it('interrupt: the running run is interrupted and exactly one run (the last admitted) runs after', async () => {
    const { id, holder } = await busySession();
    const replies = await sendAll(id, (i) => ({ input: inputOf(i, 'hold'), if_busy: 'interrupt' }));
    expect(replies.map((r) => r.status)).toEqual(replies.map(() => 201));
    for (const r of replies) expect(['interrupted', 'queued', 'started']).toContain(r.body.decision);
    expect(replies.filter((r) => r.body.decision === 'interrupted').length).toBeGreaterThan(0);
    // Every run stopped but one, which runs.
    await waitFor(
      async () => {
        const rows = await runs(id);
        return rows.every((r) => r.status !== 'queued') && rows.filter((r) => r.status === 'running').length === 1;
      },
      60_000,
      'one run left running',
    );
    const rows = await runs(id);
    const order = await admissionOrder(id);
    const last = order.at(-1) as string;
    expect(rows.filter((r) => r.status === 'running').map((r) => r.id)).toEqual([last]);
    expect(rows.find((r) => r.id === holder.id)).toMatchObject({ status: 'interrupted', end_reason: 'interrupted' });
    for (const r of rows) if (r.id !== last && r.id !== holder.id) expect(r).toMatchObject({ status: 'interrupted' });
    await release(id, last);
    const lastRun = await ended(id, last);
    expect(lastRun.status).toBe('completed');
    const lastInput = String(rows.find((r) => r.id === last)?.inputs[0]);
    expect(await echoed(id, lastRun)).toEqual([lastInput]);
  });

  it('steer: every input reaches the running child exactly once', async () => {
    const { id, holder } = await busySession();
    const replies = await sendAll(id, (i) => ({ input: inputOf(i), if_busy: 'steer' }));
    expect(replies.map((r) => [r.status, r.body.decision, r.body.id])).toEqual(replies.map(() => [200, 'steered', holder.id]));
    expect((await runs(id)).map((r) => r.id)).toEqual([holder.id]);
    await release(id, holder.id);
    const lines = await echoed(id, await ended(id, holder.id));
    expect(lines[0]).toBe('hold');
    const rest = lines.slice(1);
    expect([...rest].sort()).toEqual(Array.from({ length: MESSAGES }, (_, i) => inputOf(i)));
    expectLaneOrder(rest);
  });

  it('latest: every earlier queued input is cancelled; only the last admitted runs', async () => {
    const { id, holder } = await busySession();
    const replies = await sendAll(id, (i) => ({ input: inputOf(i), if_busy: 'latest' }));
    expect(replies.map((r) => r.status)).toEqual(replies.map(() => 201));
    expect(replies.filter((r) => r.body.decision === 'queued')).toHaveLength(1);
    expect(replies.filter((r) => r.body.decision === 'replaced')).toHaveLength(MESSAGES - 1);
    const order = (await admissionOrder(id)).filter((r) => r !== holder.id);
    const last = order.at(-1) as string;
    const rows = (await runs(id)).filter((r) => r.id !== holder.id);
    expect(rows.filter((r) => r.status === 'queued').map((r) => r.id)).toEqual([last]);
    expect(rows.filter((r) => r.status === 'cancelled')).toHaveLength(MESSAGES - 1);
    for (const r of rows) if (r.id !== last) expect(r.end_reason).toBe('replaced');
    await release(id, holder.id);
    const lastRun = await ended(id, last);
    expect(lastRun.status).toBe('completed');
    expect(await echoed(id, lastRun)).toEqual(lastRun.inputs);
    expect(lastRun.inputs).toHaveLength(1);
  });

  it('merge: one follow-up run holds every input once, in admission order', async () => {
    const { id, holder } = await busySession();
    const replies = await sendAll(id, (i) => ({ input: inputOf(i), if_busy: 'merge' }));
    const created = replies.filter((r) => r.status === 201);
    expect(created.map((r) => r.body.decision)).toEqual(['queued']);
    const followUp = String(created[0]?.body.id);
    expect(replies.filter((r) => r.status === 200).map((r) => [r.body.decision, r.body.id])).toEqual(
      Array.from({ length: MESSAGES - 1 }, () => ['merged', followUp]),
    );
    const row = (await runs(id)).find((r) => r.id === followUp) as RunRow;
    const inputs = row.inputs.map(String);
    expect([...inputs].sort()).toEqual(Array.from({ length: MESSAGES }, (_, i) => inputOf(i)));
    expectLaneOrder(inputs);
    await release(id, holder.id);
    const run = await ended(id, followUp);
    expect(run.status).toBe('completed');
    // The child got them all on stdin, in that order.
    expect(await echoed(id, run)).toEqual(inputs);
  });

  it('debounce: inputs within the window become one run\'s inputs, which starts once the window closed', async () => {
    const { id, holder } = await busySession();
    const replies = await sendAll(id, (i) => ({ input: inputOf(i), if_busy: 'debounce', debounce_ms: DEBOUNCE_MS }));
    expect(replies.every((r) => r.body.decision === 'debounced')).toBe(true);
    const created = replies.filter((r) => r.status === 201);
    expect(created).toHaveLength(1);
    const debounced = String(created[0]?.body.id);
    expect(replies.filter((r) => r.status === 200).every((r) => r.body.id === debounced)).toBe(true);
    const row = (await runs(id)).find((r) => r.id === debounced) as RunRow;
    const inputs = row.inputs.map(String);
    expect([...inputs].sort()).toEqual(Array.from({ length: MESSAGES }, (_, i) => inputOf(i)));
    expectLaneOrder(inputs);
    // Released at once: the debounced run still waits for its window.
    await release(id, holder.id);
    const run = await ended(id, debounced);
    expect(run.status).toBe('completed');
    const after = (await runs(id)).find((r) => r.id === debounced) as RunRow;
    // Started once its window closed (started_at is its transaction's start, a moment before the check under lock).
    expect(after.started_at?.getTime()).toBeGreaterThanOrEqual((after.not_before?.getTime() ?? Infinity) - 100);
    expect(await echoed(id, run)).toEqual(inputs);
  });
});
