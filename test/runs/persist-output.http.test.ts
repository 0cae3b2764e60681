/**
 * `persist_output` over HTTP (embedded, the demo agent): the body field, its default, a bad
 * value (400, nothing started), and the typed client's `persistOutput`.
 */
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentSessionsClient } from '../../src/client/index.js';
import { buildApp } from '../../src/server/app.js';
import { createSessions, type Sessions } from '../../src/internal.js';
import { demoRunner } from '../../src/runners/demo.js';
import { readSse } from './sse-client.js';

const ADMIN = 'admin-key-for-persist-output-tests';

describe('persist_output over HTTP (embedded)', () => {
  let sessions: Sessions;
  let app: FastifyInstance;
  let base: string;

  beforeAll(async () => {
    sessions = await createSessions({
      env: { DATA_DIR: ':memory:', ADMIN_API_KEY: ADMIN, RUN_SWEEP_INTERVAL_MS: '0' },
      agent: demoRunner({ wordDelayMs: 2 }),
    });
    app = await buildApp({ sessions });
    base = await app.listen({ port: 0, host: '127.0.0.1' });
  });

  afterAll(async () => {
    await app?.close();
    await sessions?.close();
  });

  const headers = { authorization: `Bearer ${ADMIN}` };

  async function newSession(): Promise<string> {
    const res = await app.inject({ method: 'POST', url: '/v1/sessions', headers, payload: {} });
    expect(res.statusCode).toBe(201);
    return res.json<{ id: string }>().id;
  }

  async function streamedText(id: string): Promise<string> {
    const { events } = await readSse(`${base}/v1/sessions/${id}/stream`, { headers });
    expect(events.at(-1)).toMatchObject({ event: 'done' });
    return events
      .filter((e) => e.event === 'text')
      .map((e) => (e.data as { data: { text: string } }).data.text)
      .join('');
  }

  it('appends the demo agent\'s reply to the history when the body asks for it', async () => {
    const id = await newSession();
    await app.inject({ method: 'POST', url: `/v1/sessions/${id}/items`, headers, payload: { items: [{ role: 'user', content: 'hi' }] } });
    const res = await app.inject({
      method: 'POST',
      url: `/v1/sessions/${id}/runs`,
      headers,
      payload: { input: { text: 'hi', words: 6 }, persist_output: true },
    });
    expect(res.statusCode).toBe(201);
    const run = res.json<{ id: string; persist_output: boolean }>();
    expect(run.persist_output).toBe(true);
    const text = await streamedText(id);
    expect(text.startsWith('You said: "hi".')).toBe(true);
    const items = await app.inject({ method: 'GET', url: `/v1/sessions/${id}/items`, headers });
    const list = items.json<{ items: Array<{ id: string; role: string; type: string; content: unknown }> }>().items;
    expect(list.map((i) => i.role)).toEqual(['user', 'assistant']);
    expect(list[1]).toEqual(expect.objectContaining({ id: run.id, role: 'assistant', type: 'message', content: text }));
    const got = await app.inject({ method: 'GET', url: `/v1/sessions/${id}/runs/${run.id}`, headers });
    expect(got.json()).toMatchObject({ status: 'completed', persist_output: true });
  });

  it('defaults to false and appends nothing', async () => {
    const id = await newSession();
    const res = await app.inject({ method: 'POST', url: `/v1/sessions/${id}/runs`, headers, payload: { input: { words: 3 } } });
    expect(res.json()).toMatchObject({ persist_output: false });
    await streamedText(id);
    const items = await app.inject({ method: 'GET', url: `/v1/sessions/${id}/items`, headers });
    expect(items.json()).toMatchObject({ items: [] });
  });

  it('refuses a value that is not a boolean (400 validation_failed) and starts nothing', async () => {
    const id = await newSession();
    const before = await app.inject({ method: 'GET', url: `/v1/sessions/${id}`, headers });
    for (const value of ['yes', 'true', 1, null]) {
      const res = await app.inject({ method: 'POST', url: `/v1/sessions/${id}/runs`, headers, payload: { persist_output: value } });
      expect(res.statusCode, JSON.stringify(value)).toBe(400);
      expect(res.headers['content-type']).toContain('application/problem+json');
      expect(res.json()).toMatchObject({ code: 'validation_failed' });
    }
    const runs = await app.inject({ method: 'GET', url: `/v1/sessions/${id}/runs`, headers });
    expect(runs.json()).toMatchObject({ runs: [] });
    const after = await app.inject({ method: 'GET', url: `/v1/sessions/${id}`, headers });
    expect(after.json<{ version: number }>().version).toBe(before.json<{ version: number }>().version);
  });

  it('passes persistOutput from the typed client', async () => {
    const client = new AgentSessionsClient({ baseUrl: base, apiKey: ADMIN });
    const s = await client.create();
    const run = await client.runs.start(s.id, { text: 'typed', words: 4 }, { persistOutput: true });
    expect(run.persist_output).toBe(true);
    const text = await streamedText(s.id);
    const page = await client.items.list(s.id);
    expect(page.items.map((i) => [i.id, i.role, i.content])).toEqual([[run.id, 'assistant', text]]);
  });

  it('lets the library refuse a flag that is not a boolean', async () => {
    const id = await newSession();
    await expect(
      sessions.runs.start(id, undefined, { persistOutput: 'yes' as unknown as boolean }),
    ).rejects.toMatchObject({ code: 'validation_failed' });
  });
});
