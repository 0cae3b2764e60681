/**
 * The real CLI over a real socket: start `agent-sessions serve`, use it with the key it
 * prints, stop it with SIGTERM, start it again on the same data, and find everything there.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { requireServices, useFreshDatabase } from '../setup/harness.js';
import { startServer, type ServerProcess } from '../setup/server-process.js';

async function call(server: ServerProcess, key: string, method: string, url: string, body?: unknown) {
  const res = await fetch(`${server.url}${url}`, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, etag: res.headers.get('etag'), body: res.status === 204 ? null : ((await res.json()) as Record<string, unknown>) };
}

/** Creates, updates, appends and terminates; returns the ids to look for after a restart. */
async function exercise(server: ServerProcess, key: string) {
  const kept = await call(server, key, 'POST', '/v1/sessions', { user_id: 'e2e', metadata: { n: 1 } });
  expect(kept.status).toBe(201);
  const id = kept.body?.id as string;
  const updated = await call(server, key, 'PATCH', `/v1/sessions/${id}`, { title: 'kept' });
  expect(updated.body).toMatchObject({ version: 2, title: 'kept' });
  expect((await call(server, key, 'POST', `/v1/sessions/${id}/items`, { items: [{ role: 'user', content: 'hello' }] })).status).toBe(201);
  const ended = await call(server, key, 'POST', '/v1/sessions', { user_id: 'e2e' });
  const endedId = ended.body?.id as string;
  expect((await call(server, key, 'DELETE', `/v1/sessions/${endedId}?reason=bye`)).body).toMatchObject({ status: 'terminated' });
  return { id, endedId };
}

async function verifyAfterRestart(server: ServerProcess, key: string, ids: { id: string; endedId: string }) {
  const got = await call(server, key, 'GET', `/v1/sessions/${ids.id}`);
  expect(got.status).toBe(200);
  expect(got.body).toMatchObject({ title: 'kept', version: 3, metadata: { n: 1 } });
  const items = await call(server, key, 'GET', `/v1/sessions/${ids.id}/items`);
  expect((items.body?.items as { content: unknown }[]).map((i) => i.content)).toEqual(['hello']);
  expect((await call(server, key, 'GET', `/v1/sessions/${ids.endedId}`)).body).toMatchObject({ status: 'terminated', end_reason: 'bye' });
  const list = await call(server, key, 'GET', '/v1/sessions?user_id=e2e');
  expect((list.body?.sessions as unknown[]).length).toBe(2);
}

// Each test starts the server twice (tsx, then PGlite or migrations): 43 s under load here,
// too close to the default 60 s test timeout.
const TWO_STARTS_MS = 180_000;

describe('e2e/cli/embedded', { timeout: TWO_STARTS_MS }, () => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'agent-sessions-e2e-'));
  const servers: ServerProcess[] = [];
  afterAll(async () => {
    await Promise.all(servers.map((s) => s.stop('SIGKILL')));
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('prints a key once, serves, shuts down gracefully and keeps everything across a restart', async () => {
    const first = await startServer({ env: { DATA_DIR: dataDir } });
    servers.push(first);
    const key = /(ask_[A-Za-z0-9]{12}_[A-Za-z0-9_-]{43})/.exec(first.output())?.[1];
    expect(key, first.output()).toBeDefined();
    const ids = await exercise(first, key as string);
    expect(await first.stop('SIGTERM')).toBe(0);

    const second = await startServer({ env: { DATA_DIR: dataDir } });
    servers.push(second);
    expect(second.output()).not.toMatch(/ask_/);
    await verifyAfterRestart(second, key as string, ids);
    expect((await call(second, 'ask_wrongwrongwr_' + 'x'.repeat(43), 'GET', '/v1/sessions')).status).toBe(401);
    expect(await second.stop('SIGINT')).toBe(0);
  });
});

const pgReady = requireServices(['postgres'], 'e2e/cli/postgres');
describe.skipIf(!pgReady)('e2e/cli/postgres', { timeout: TWO_STARTS_MS }, () => {
  const db = useFreshDatabase();
  const servers: ServerProcess[] = [];
  const key = 'e2e-admin-key-0123456789abcdef';
  afterAll(async () => {
    await Promise.all(servers.map((s) => s.stop('SIGKILL')));
  });

  it('works the same with DATABASE_URL and keeps everything across a restart', async () => {
    const env = { DATABASE_URL: db.url, ADMIN_API_KEY: key };
    const first = await startServer({ env });
    servers.push(first);
    const ids = await exercise(first, key);
    expect(await first.stop('SIGTERM')).toBe(0);
    const second = await startServer({ env });
    servers.push(second);
    await verifyAfterRestart(second, key, ids);
    const ready = await fetch(`${second.url}/ready`);
    expect(((await ready.json()) as { mode: string }).mode).toBe('distributed');
  });
});
