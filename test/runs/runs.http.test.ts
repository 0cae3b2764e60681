/**
 * The runs API over HTTP (embedded): JSON routes through `app.inject()`, the SSE stream over
 * a real socket (framing, Last-Event-ID, ?after=, heartbeats, close after the terminal
 * event), scopes and tenant isolation.
 */
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/server/app.js';
import { createSessions, type Sessions, internals } from '../../src/internal.js';
import { demoRunner } from '../../src/runners/demo.js';
import { readSse, type SseEvent } from './sse-client.js';

const ADMIN = 'admin-key-for-runs-http-tests';

describe('runs over HTTP (embedded)', () => {
  let sessions: Sessions;
  let app: FastifyInstance;
  let base: string;
  let readOnly: string;
  let otherTenant: string;

  beforeAll(async () => {
    sessions = await createSessions({
      env: { DATA_DIR: ':memory:', ADMIN_API_KEY: ADMIN, SSE_HEARTBEAT_MS: '100', RUN_SWEEP_INTERVAL_MS: '0' },
      agent: demoRunner({ wordDelayMs: 5 }),
    });
    app = await buildApp({ sessions });
    base = await app.listen({ port: 0, host: '127.0.0.1' });
    readOnly = (await internals(sessions).apiKeys.create({ tenant: 'default', scopes: ['read'] })).key;
    otherTenant = (await internals(sessions).apiKeys.create({ tenant: 'other', scopes: ['read', 'write', 'runs'] })).key;
  });

  afterAll(async () => {
    await app?.close();
    await sessions?.close();
  });

  const auth = (key = ADMIN) => ({ authorization: `Bearer ${key}` });

  async function newSession(): Promise<string> {
    const res = await app.inject({ method: 'POST', url: '/v1/sessions', headers: auth(), payload: {} });
    expect(res.statusCode).toBe(201);
    return res.json<{ id: string }>().id;
  }

  it('starts a run (201), streams it as SSE, and reports it done', async () => {
    const id = await newSession();
    const res = await app.inject({
      method: 'POST',
      url: `/v1/sessions/${id}/runs`,
      headers: auth(),
      payload: { input: { text: 'hello there', words: 8 } },
    });
    expect(res.statusCode).toBe(201);
    const run = res.json<{ id: string; status: string; session_id: string }>();
    expect(run).toMatchObject({ status: 'running', session_id: id });
    expect(res.headers.location).toBe(`/v1/sessions/${id}/runs/${run.id}`);

    const { events, comments } = await readSse(`${base}/v1/sessions/${id}/stream`, { headers: auth() });
    expect(events[0]).toMatchObject({ event: 'status' });
    expect(events.at(-1)).toMatchObject({ event: 'done' });
    const seqs = events.map((e) => Number(e.id));
    expect(seqs).toEqual(seqs.map((_, i) => (seqs[0] ?? 0) + i));
    const text = events.filter((e) => e.event === 'text').map((e) => (e.data as { data: { text: string } }).data.text).join('');
    expect(text.startsWith('You said: "hello there".')).toBe(true);
    expect(comments).toContain(' stream open');

    const got = await app.inject({ method: 'GET', url: `/v1/sessions/${id}/runs/${run.id}`, headers: auth(readOnly) });
    expect(got.statusCode).toBe(200);
    expect(got.json()).toMatchObject({ status: 'completed', end_reason: 'completed' });
    const list = await app.inject({ method: 'GET', url: `/v1/sessions/${id}/runs?limit=1`, headers: auth(readOnly) });
    expect(list.json<{ runs: unknown[] }>().runs).toHaveLength(1);
  });

  it('resumes with Last-Event-ID and ?after= without gap or duplicate, and sends heartbeats', async () => {
    const id = await newSession();
    await app.inject({ method: 'POST', url: `/v1/sessions/${id}/runs`, headers: auth(), payload: { input: { words: 30, delay_ms: 10 } } });
    const first = await readSse(`${base}/v1/sessions/${id}/stream`, { headers: auth(), maxEvents: 5 });
    const lastId = first.events.at(-1)?.id ?? '0';
    const second = await readSse(`${base}/v1/sessions/${id}/stream`, { headers: { ...auth(), 'last-event-id': lastId } });
    const all: SseEvent[] = [...first.events, ...second.events];
    const seqs = all.map((e) => Number(e.id));
    expect(seqs).toEqual(seqs.map((_, i) => (seqs[0] ?? 0) + i));
    expect(all.at(-1)?.event).toBe('done');
    const viaQuery = await readSse(`${base}/v1/sessions/${id}/stream?after=${lastId}`, { headers: auth() });
    expect(viaQuery.events.map((e) => e.id)).toEqual(second.events.map((e) => e.id));
    // A slow run shows heartbeat comments between events.
    await app.inject({ method: 'POST', url: `/v1/sessions/${id}/runs`, headers: auth(), payload: { input: { words: 3, delay_ms: 300 } } });
    const slow = await readSse(`${base}/v1/sessions/${id}/stream`, { headers: auth() });
    expect(slow.comments).toContain(' heartbeat');
  });

  it('interrupts and forwards input over HTTP', async () => {
    const id = await newSession();
    await app.inject({ method: 'POST', url: `/v1/sessions/${id}/runs`, headers: auth(), payload: { input: { words: 200, delay_ms: 20 } } });
    const busy = await app.inject({ method: 'POST', url: `/v1/sessions/${id}/runs`, headers: auth(), payload: {} });
    expect(busy.statusCode).toBe(409);
    expect(busy.json()).toMatchObject({ code: 'session_busy' });
    const input = await app.inject({ method: 'POST', url: `/v1/sessions/${id}/input`, headers: auth(), payload: { input: 'more please' } });
    expect(input.statusCode).toBe(202);
    expect(input.json()).toMatchObject({ seq: 1 });
    // Interrupt once the runner has taken the input (a fixed wait could come before it).
    let interrupting: Promise<{ statusCode: number }> | null = null;
    const stream = readSse(`${base}/v1/sessions/${id}/stream`, {
      headers: auth(),
      onEvent: (e) => {
        if (interrupting === null && e.event === 'status' && JSON.stringify(e.data).includes('more please')) {
          interrupting = app.inject({ method: 'POST', url: `/v1/sessions/${id}/interrupt`, headers: auth() });
        }
      },
    });
    const { events } = await stream;
    expect(interrupting).not.toBeNull();
    expect((await (interrupting as unknown as Promise<{ statusCode: number }>)).statusCode).toBe(202);
    expect(events.some((e) => e.event === 'status' && JSON.stringify(e.data).includes('more please'))).toBe(true);
    expect(events.at(-1)).toMatchObject({ event: 'done' });
    expect((events.at(-1)?.data as { data: { status: string } }).data.status).toBe('interrupted');
    const again = await app.inject({ method: 'POST', url: `/v1/sessions/${id}/interrupt`, headers: auth(), payload: {} });
    expect(again.json()).toMatchObject({ code: 'no_active_run' });
    const queued = await app.inject({
      method: 'POST',
      url: `/v1/sessions/${id}/runs`,
      headers: auth(),
      payload: { input: 'x', if_busy: 'enqueue' },
    });
    expect(queued.statusCode).toBe(201);
  });

  it('answers 201 with a new run and 200 when the input joined one, with the decision; validates debounce_ms', async () => {
    const id = await newSession();
    const post = (payload: Record<string, unknown>) => app.inject({ method: 'POST', url: `/v1/sessions/${id}/runs`, headers: auth(), payload });
    const started = await post({ input: { words: 400, delay_ms: 20 } });
    expect(started.statusCode).toBe(201);
    expect(started.json()).toMatchObject({ decision: 'started', status: 'running', inputs: [{ words: 400, delay_ms: 20 }], takes_input: true });
    const steered = await post({ input: 'aside', if_busy: 'steer' });
    expect(steered.statusCode).toBe(200);
    expect(steered.json()).toMatchObject({ decision: 'steered', id: started.json().id });
    const queued = await post({ input: 'a', if_busy: 'merge' });
    expect(queued.statusCode).toBe(201);
    expect(queued.json()).toMatchObject({ decision: 'queued', status: 'queued', inputs: ['a'] });
    expect(queued.headers.location).toBe(`/v1/sessions/${id}/runs/${queued.json().id}`);
    const merged = await post({ input: 'b', if_busy: 'merge' });
    expect(merged.statusCode).toBe(200);
    expect(merged.json()).toMatchObject({ decision: 'merged', id: queued.json().id, inputs: ['a', 'b'] });
    const replaced = await post({ input: 'c', if_busy: 'latest' });
    expect(replaced.statusCode).toBe(201);
    expect(replaced.json()).toMatchObject({ decision: 'replaced', status: 'queued', inputs: ['c'] });
    const cancelled = await app.inject({ method: 'GET', url: `/v1/sessions/${id}/runs/${queued.json().id}`, headers: auth() });
    expect(cancelled.json()).toMatchObject({ status: 'cancelled', end_reason: 'replaced' });
    const debounced = await post({ input: 'd', if_busy: 'debounce', debounce_ms: 5_000 });
    expect(debounced.statusCode).toBe(201);
    expect(debounced.json()).toMatchObject({ decision: 'debounced', status: 'queued' });
    expect(debounced.json().not_before).not.toBeNull();
    const again = await post({ input: 'e', if_busy: 'debounce', debounce_ms: 5_000 });
    expect(again.statusCode).toBe(200);
    expect(again.json()).toMatchObject({ decision: 'debounced', id: debounced.json().id, inputs: ['d', 'e'] });
    for (const bad of [{ if_busy: 'debounce' }, { if_busy: 'debounce', debounce_ms: 0 }, { if_busy: 'debounce', debounce_ms: 60_001 }, { if_busy: 'later' }]) {
      const res = await post(bad);
      expect(res.statusCode).toBe(400);
      expect(res.json()).toMatchObject({ code: 'validation_failed' });
    }
    await app.inject({ method: 'DELETE', url: `/v1/sessions/${id}`, headers: auth() });
  });

  it('enforces scopes, validates input and hides other tenants', async () => {
    const id = await newSession();
    const denied = await app.inject({ method: 'POST', url: `/v1/sessions/${id}/runs`, headers: auth(readOnly), payload: {} });
    expect(denied.statusCode).toBe(403);
    const bad = await app.inject({ method: 'POST', url: `/v1/sessions/${id}/runs`, headers: auth(), payload: { if_busy: 'sometimes' } });
    expect(bad.statusCode).toBe(400);
    const extra = await app.inject({ method: 'POST', url: `/v1/sessions/${id}/input`, headers: auth(), payload: {} });
    expect(extra.statusCode).toBe(400);
    const badId = await app.inject({ method: 'GET', url: `/v1/sessions/${id}/stream`, headers: { ...auth(), 'last-event-id': 'abc' } });
    expect(badId.statusCode).toBe(400);
    for (const [method, url] of [
      ['GET', `/v1/sessions/${id}/stream`],
      ['GET', `/v1/sessions/${id}/runs`],
      ['POST', `/v1/sessions/${id}/runs`],
      ['POST', `/v1/sessions/${id}/interrupt`],
    ] as const) {
      const res = await app.inject({ method, url, headers: auth(otherTenant), ...(method === 'POST' ? { payload: {} } : {}) });
      expect(res.statusCode, `${method} ${url}`).toBe(404);
    }
    const noRun = await app.inject({ method: 'GET', url: `/v1/sessions/${id}/runs/01900000-0000-7000-8000-0000000000aa`, headers: auth() });
    expect(noRun.json()).toMatchObject({ code: 'run_not_found' });
  });
});
