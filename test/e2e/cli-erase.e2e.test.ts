/**
 * `agent-sessions erase` as a process: against an embedded directory a running server holds
 * (through its control socket: the server's caches forget at once), against the same
 * directory once the server stopped, and against PostgreSQL. Results are JSON on stdout;
 * tenant erasure without --yes is refused with exit code 2, changing nothing.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli, startServer, type ServerProcess } from '../setup/server-process.js';
import { freshDatabase, requireServices } from '../setup/harness.js';

async function http(server: ServerProcess, key: string, method: string, url: string, body?: unknown): Promise<{ status: number; json: unknown }> {
  const res = await fetch(`${server.url}${url}`, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, json: await res.json().catch(() => null) };
}

describe('e2e/cli erase', { timeout: 300_000 }, () => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'agent-sessions-erase-'));
  const env = { DATA_DIR: dataDir };
  let server: ServerProcess | null = null;
  afterAll(async () => {
    await server?.stop('SIGKILL');
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('erases a user and a tenant through the running server, then on the closed directory', async () => {
    server = await startServer({ env });
    const made = await runCli(['keys', 'create', '--tenant', 't1', '--scopes', 'read,write'], env);
    expect(made.code, made.stderr).toBe(0);
    const key = (JSON.parse(made.stdout) as { key: string }).key;
    const mine = await http(server, key, 'POST', '/v1/sessions', { user_id: 'u1', title: 'private' });
    const theirs = await http(server, key, 'POST', '/v1/sessions', { user_id: 'u2' });
    const mineId = (mine.json as { id: string }).id;
    const theirsId = (theirs.json as { id: string }).id;
    await http(server, key, 'POST', `/v1/sessions/${mineId}/items`, { items: [{ role: 'user', content: { text: 'hi' } }] });
    // Cached by the server, which must forget it when the CLI erases.
    expect((await http(server, key, 'GET', `/v1/sessions/${mineId}`)).status).toBe(200);

    const usage = await runCli(['erase', '--tenant', 't1'], env);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/--yes/);
    expect(usage.stdout).toBe('');
    expect((await runCli(['erase', '--user', '', '--tenant', 't1'], env)).code).toBe(2);
    expect((await runCli(['erase', '--user', 'u1'], env)).code).toBe(2);
    expect((await http(server, key, 'GET', `/v1/sessions/${mineId}`)).status).toBe(200);

    const user = await runCli(['erase', '--user', 'u1', '--tenant', 't1'], env);
    expect(user.code, user.stderr).toBe(0);
    expect(JSON.parse(user.stdout)).toEqual({ sessions: 1, items: 1, runs: 0, output_events: 0, outbox: 2, keys: 0 });
    expect((await http(server, key, 'GET', `/v1/sessions/${mineId}`)).status).toBe(404);
    expect((await http(server, key, 'GET', `/v1/sessions/${theirsId}`)).status).toBe(200);

    const tenant = await runCli(['erase', '--tenant', 't1', '--yes'], env);
    expect(tenant.code, tenant.stderr).toBe(0);
    expect(JSON.parse(tenant.stdout)).toMatchObject({ sessions: 1, keys: 1 });
    expect((await http(server, key, 'GET', `/v1/sessions/${theirsId}`)).status).toBe(401);
    const unknown = await runCli(['erase', '--tenant', 't1', '--yes'], env);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/tenant t1 not found/);

    await server.stop('SIGTERM');
    server = null;
    // The CLI opens the directory itself once nobody holds it.
    const closed = await runCli(['erase', '--user', 'nobody', '--tenant', 't2'], env);
    expect(closed.code, closed.stderr).toBe(0);
    expect(JSON.parse(closed.stdout)).toEqual({ sessions: 0, items: 0, runs: 0, output_events: 0, outbox: 0, keys: 0 });
  });

  it.skipIf(!requireServices(['postgres'], 'e2e/cli erase on PostgreSQL'))('erases on PostgreSQL', async () => {
    const db = await freshDatabase();
    try {
      const pgEnv = { DATABASE_URL: db.url };
      const made = await runCli(['keys', 'create', '--tenant', 'acme', '--scopes', 'admin'], pgEnv);
      expect(made.code, made.stderr).toBe(0);
      const erased = await runCli(['erase', '--tenant', 'acme', '--yes'], pgEnv);
      expect(erased.code, erased.stderr).toBe(0);
      expect(JSON.parse(erased.stdout)).toEqual({ sessions: 0, items: 0, runs: 0, output_events: 0, outbox: 0, keys: 1 });
    } finally {
      await db.drop();
    }
  });
});
