/**
 * Idempotency-Key end to end (SPEC §7.1, issue 12): three real `agent-sessions serve`
 * processes A, B, C on one fresh PostgreSQL database, one Redis key prefix and one NATS
 * JetStream stream.
 *
 * - The same POST (a counters increment, a run start, a session create) sent 50 times at
 *   once, spread over the three processes, executes once: the counter rises once, one run
 *   exists, one session; every one of the 50 answers has the first one's status and body;
 *   NATS receives one `session.created` and one `run.started`.
 * - A fourth process with the test-only fault point (NODE_ENV=test,
 *   TEST_FAULT_KILL_AFTER_COMMIT=1) SIGKILLs itself right after the increment committed,
 *   before it answers; the retry on B gets the stored answer, and the counter counted once.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type ServerProcess } from '../setup/server-process.js';
import { freshDatabase, requireServices, serviceUrl, uniqueKeyPrefix, uniqueNatsNames, uniqueToken, type FreshDatabase } from '../setup/harness.js';
import { deleteStream, readStream, waitFor } from '../events/support.js';

const SUITE = 'idempotency end to end/postgres+redis+nats';
const ADMIN = `idem-e2e-admin-${uniqueToken()}`;
const auth = { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' };

interface Answer {
  status: number;
  body: string;
  replayed: boolean;
}

async function send(url: string, path: string, body: unknown, key?: string): Promise<Answer> {
  const res = await fetch(`${url}${path}`, {
    method: 'POST',
    headers: { ...auth, ...(key === undefined ? {} : { 'idempotency-key': key }) },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  return { status: res.status, body: await res.text(), replayed: res.headers.get('idempotent-replayed') === 'true' };
}

async function get<T>(url: string, path: string): Promise<T> {
  const res = await fetch(`${url}${path}`, { headers: auth, signal: AbortSignal.timeout(30_000) });
  expect(res.status).toBe(200);
  return (await res.json()) as T;
}

describe.skipIf(!requireServices(['postgres', 'redis', 'nats'], SUITE))(SUITE, () => {
  let db: FreshDatabase | null = null;
  let env: Record<string, string> = {};
  const nats = uniqueNatsNames();
  /** Events NATS received for a session, of one type. */
  const published = async (sessionId: string, type: string) =>
    (await readStream(serviceUrl('nats'), nats.stream)).filter((m) => m.event.session_id === sessionId && m.event.type === type);
  const servers: ServerProcess[] = [];
  const url = (i: number) => (servers[i % 3] as ServerProcess).url;

  beforeAll(async () => {
    db = await freshDatabase();
    env = {
      DATABASE_URL: db.url,
      REDIS_URL: serviceUrl('redis'),
      KEY_PREFIX: uniqueKeyPrefix(),
      NATS_URL: serviceUrl('nats'),
      NATS_STREAM: nats.stream,
      NATS_SUBJECT_PREFIX: nats.subjectPrefix,
      ADMIN_API_KEY: ADMIN,
    };
    // The first start migrates; the others then start together.
    servers.push(await startServer({ env: { ...env, INSTANCE_ID: 'A' }, timeoutMs: 90_000 }));
    const rest = await Promise.allSettled(['B', 'C'].map((name) => startServer({ env: { ...env, INSTANCE_ID: name }, timeoutMs: 90_000 })));
    for (const r of rest) if (r.status === 'fulfilled') servers.push(r.value);
    const failed = rest.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  });

  afterAll(async () => {
    await Promise.all(servers.map((s) => s.stop().catch(() => undefined)));
    await deleteStream(serviceUrl('nats'), nats.stream);
    await db?.drop();
  });

  async function newSession(): Promise<string> {
    const created = await send(url(0), '/v1/sessions', {});
    expect(created.status).toBe(201);
    return (JSON.parse(created.body) as { id: string }).id;
  }

  /** Sends the same request 50 times at once across A, B and C; every answer must equal the first. */
  async function fifty(path: string, body: unknown, status: number): Promise<Answer[]> {
    const key = `e2e-${uniqueToken()}`;
    const answers = await Promise.all(Array.from({ length: 50 }, (_, i) => send(url(i), path, body, key)));
    const first = answers[0] as Answer;
    expect(first.status, first.body).toBe(status);
    for (const a of answers) {
      expect(a.status, a.body).toBe(first.status);
      expect(a.body).toBe(first.body);
    }
    // Exactly one executed; the other 49 were replays.
    expect(answers.filter((a) => !a.replayed)).toHaveLength(1);
    return answers;
  }

  it('a counters increment sent 50 times at once through three processes counts once', async () => {
    const id = await newSession();
    const answers = await fifty(`/v1/sessions/${id}/counters`, { total_turns: 1, input_tokens: 7 }, 200);
    const session = await get<{ total_turns: number; input_tokens: number; version: number }>(url(1), `/v1/sessions/${id}`);
    expect(session.total_turns).toBe(1);
    expect(session.input_tokens).toBe(7);
    expect((JSON.parse((answers[0] as Answer).body) as { version: number }).version).toBe(session.version);
  });

  it('a run start sent 50 times at once through three processes starts one run', async () => {
    const id = await newSession();
    const answers = await fifty(`/v1/sessions/${id}/runs`, { input: { words: 3, delay_ms: 5 } }, 201);
    const runId = (JSON.parse((answers[0] as Answer).body) as { id: string }).id;
    const runs = await get<{ runs: Array<{ id: string }> }>(url(2), `/v1/sessions/${id}/runs`);
    expect(runs.runs.map((r) => r.id)).toEqual([runId]);
    await waitFor(async () => (await published(id, 'run.completed')).length > 0, 'the run to complete on NATS');
    expect(await published(id, 'run.started')).toHaveLength(1);
  });

  it('a session create sent 50 times at once through three processes creates one session', async () => {
    const title = `idem-${uniqueToken()}`;
    const answers = await fifty('/v1/sessions', { title }, 201);
    const id = (JSON.parse((answers[0] as Answer).body) as { id: string }).id;
    const found = await get<{ sessions: Array<{ id: string }> }>(url(0), `/v1/sessions?q=${title}`);
    expect(found.sessions.map((s) => s.id)).toEqual([id]);
    await waitFor(async () => (await published(id, 'session.created')).length > 0, 'session.created on NATS');
    expect(await published(id, 'session.created')).toHaveLength(1);
  });

  it('a process SIGKILLed right after the commit: the retry on another process gets the stored answer, counted once', async () => {
    const id = await newSession();
    const doomed = await startServer({
      env: { ...env, INSTANCE_ID: 'K', NODE_ENV: 'test', TEST_FAULT_KILL_AFTER_COMMIT: '1' },
      timeoutMs: 90_000,
    });
    const key = `kill-${uniqueToken()}`;
    // The answer never comes: the process dies between the commit and the reply.
    await expect(send(doomed.url, `/v1/sessions/${id}/counters`, { total_turns: 1 }, key)).rejects.toThrow();
    expect(await doomed.stop()).toBeNull();
    expect(doomed.child.signalCode).toBe('SIGKILL');
    const retry = await send(url(1), `/v1/sessions/${id}/counters`, { total_turns: 1 }, key);
    expect(retry.status, retry.body).toBe(200);
    expect(retry.replayed).toBe(true);
    const answered = JSON.parse(retry.body) as { total_turns: number; version: number };
    expect(answered.total_turns).toBe(1);
    const session = await get<{ total_turns: number; version: number }>(url(2), `/v1/sessions/${id}`);
    expect(session.total_turns).toBe(1);
    expect(session.version).toBe(answered.version);
    // What was stored is what the killed process committed.
    const client = new pg.Client({ connectionString: db?.url });
    await client.connect();
    try {
      const { rows } = await client.query<{ status: number }>('SELECT status FROM idempotency_keys WHERE key = $1', [key]);
      expect(rows).toEqual([{ status: 200 }]);
    } finally {
      await client.end();
    }
  });
});
