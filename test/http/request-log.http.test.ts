/**
 * Request logs over a real socket: one line per request with the route pattern, status,
 * duration and who/what; SSE streams logged when they end (by the server or the client);
 * unmatched paths and refused keys logged too; the API key never anywhere in the log; and
 * nothing at all below the level.
 */
import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/server/app.js';
import { createSessions, type Sessions } from '../../src/internal.js';
import { readSse } from '../runs/sse-client.js';

const ADMIN_KEY = 'log-test-admin-key-0123456789abcdef';
const auth = { authorization: `Bearer ${ADMIN_KEY}` };

interface Captured {
  text: () => string;
  lines: () => Record<string, unknown>[];
}

function capture(): { stream: Writable; captured: Captured } {
  let text = '';
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      text += chunk.toString();
      done();
    },
  });
  return {
    stream,
    captured: {
      text: () => text,
      lines: () => text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>),
    },
  };
}

/** Waits (with a deadline, no fixed sleep) for a log line that matches. */
async function lineWhere(captured: Captured, match: (l: Record<string, unknown>) => boolean, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = captured.lines().find((l) => l.msg === 'request' && match(l));
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`no matching request line in:\n${captured.text()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function serve(level: string): Promise<{ sessions: Sessions; app: FastifyInstance; url: string; captured: Captured }> {
  const sessions = await createSessions({ env: { DATA_DIR: ':memory:', ADMIN_API_KEY: ADMIN_KEY, SWEEP_INTERVAL_MS: '0' } });
  const { stream, captured } = capture();
  const app = await buildApp({ sessions, logger: pino({ level }, stream) });
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  return { sessions, app, url, captured };
}

describe('http/request-log', () => {
  let s: Awaited<ReturnType<typeof serve>>;
  beforeAll(async () => {
    s = await serve('info');
  });
  afterAll(async () => {
    await s?.app.close();
    await s?.sessions.close();
  });

  it('logs one line per request with the route pattern, status, duration, tenant, key and session', async () => {
    const created = await fetch(`${s.url}/v1/sessions`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ user_id: 'u1' }),
    });
    expect(created.status).toBe(201);
    const id = ((await created.json()) as { id: string }).id;
    const got = await fetch(`${s.url}/v1/sessions/${id}?x=1`, { headers: { ...auth, 'x-request-id': 'req-get-1' } });
    expect(got.status).toBe(200);

    const line = await lineWhere(s.captured, (l) => l.reqId === 'req-get-1');
    expect(line).toMatchObject({
      level: 30,
      method: 'GET',
      route: '/v1/sessions/:id',
      status: 200,
      tenant_id: 'default',
      session_id: id,
      run_id: null,
    });
    expect(typeof line.key_id).toBe('string');
    expect(typeof line.duration_ms).toBe('number');
    expect(line).not.toHaveProperty('path');
    expect(line).not.toHaveProperty('aborted');
    expect(s.captured.lines().filter((l) => l.reqId === 'req-get-1')).toHaveLength(1);
    const post = await lineWhere(s.captured, (l) => l.method === 'POST' && l.route === '/v1/sessions');
    expect(post).toMatchObject({ status: 201, session_id: null });
  });

  it('logs a wrong key (401, no tenant) and an unmatched path (404, route null, path without query)', async () => {
    const wrong = 'ask_wrongwrongwr_' + 'y'.repeat(43);
    const refused = await fetch(`${s.url}/v1/sessions`, { headers: { authorization: `Bearer ${wrong}`, 'x-request-id': 'req-401' } });
    expect(refused.status).toBe(401);
    const missing = await fetch(`${s.url}/no/such/path?token=secret-in-query`, { headers: { 'x-request-id': 'req-404' } });
    expect(missing.status).toBe(404);

    expect(await lineWhere(s.captured, (l) => l.reqId === 'req-401')).toMatchObject({
      level: 30,
      route: '/v1/sessions',
      status: 401,
      tenant_id: null,
      key_id: null,
    });
    expect(await lineWhere(s.captured, (l) => l.reqId === 'req-404')).toMatchObject({
      level: 30,
      method: 'GET',
      route: null,
      path: '/no/such/path',
      status: 404,
    });
    expect(s.captured.text()).not.toContain(wrong);
    expect(s.captured.text()).not.toContain('secret-in-query');
  });

  it('logs an SSE run stream when the server ends it, and an event feed when the client leaves', async () => {
    const created = await fetch(`${s.url}/v1/sessions`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: '{}',
    });
    const id = ((await created.json()) as { id: string }).id;
    const started = await fetch(`${s.url}/v1/sessions/${id}/runs`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ input: { words: 3, delay_ms: 1 } }),
    });
    expect(started.status).toBe(201);
    const runId = ((await started.json()) as { id: string }).id;
    const stream = await readSse(`${s.url}/v1/sessions/${id}/stream?after=0`, { headers: { ...auth, 'x-request-id': 'req-stream' } });
    expect(stream.ended).toBe(true);
    const ended = await lineWhere(s.captured, (l) => l.reqId === 'req-stream');
    expect(ended).toMatchObject({ route: '/v1/sessions/:id/stream', status: 200, session_id: id });
    expect(ended).not.toHaveProperty('aborted');

    const run = await fetch(`${s.url}/v1/sessions/${id}/runs/${runId}`, { headers: { ...auth, 'x-request-id': 'req-run' } });
    expect(run.status).toBe(200);
    expect(await lineWhere(s.captured, (l) => l.reqId === 'req-run')).toMatchObject({
      route: '/v1/sessions/:id/runs/:runId',
      session_id: id,
      run_id: runId,
    });

    // The feed never ends by itself: read its first bytes, then hang up.
    const leave = new AbortController();
    const feed = await fetch(`${s.url}/v1/events`, { headers: { ...auth, 'x-request-id': 'req-feed' }, signal: leave.signal });
    expect(feed.status).toBe(200);
    await feed.body?.getReader().read();
    leave.abort();
    const left = await lineWhere(s.captured, (l) => l.reqId === 'req-feed');
    expect(left).toMatchObject({ route: '/v1/events', status: 200, aborted: true });
  });

  it('never writes the API key or the Authorization header', () => {
    expect(s.captured.text()).not.toContain(ADMIN_KEY);
    expect(s.captured.text().toLowerCase()).not.toContain('authorization');
    expect(s.captured.text().toLowerCase()).not.toContain('bearer');
  });
});

describe('http/request-log/level', () => {
  it('writes no request line below the level (LOG_LEVEL=warn)', async () => {
    const s = await serve('warn');
    try {
      const res = await fetch(`${s.url}/v1/sessions`, { headers: auth });
      expect(res.status).toBe(200);
      const missing = await fetch(`${s.url}/nope`);
      expect(missing.status).toBe(404);
    } finally {
      // Closing waits for the responses to end, so every line that would be written is.
      await s.app.close();
      await s.sessions.close();
    }
    expect(s.captured.lines().filter((l) => l.msg === 'request')).toEqual([]);
  });
});
