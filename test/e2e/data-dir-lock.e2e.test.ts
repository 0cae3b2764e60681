/**
 * One process per embedded data directory (SPEC §18), with real processes: while `serve`
 * holds a directory, `keys create` goes to it through the control socket (the key works at
 * once and survives a restart), a second `serve`, `migrate` and the library refuse naming the
 * holder's pid, and after a `kill -9` of the server the next start takes the stale lock over.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createSessions, isAgentSessionsError } from '../../src/index.js';
import { freePort, runCli, startServer, type ServerProcess } from '../setup/server-process.js';

async function status(server: ServerProcess, key: string): Promise<number> {
  return (await fetch(`${server.url}/v1/sessions`, { headers: { authorization: `Bearer ${key}` } })).status;
}

/** A failure the CLI reports as it should: one line on stderr, no stack trace. */
function oneLine(stderr: string): string {
  const lines = stderr.trim().split('\n');
  expect(lines, stderr).toHaveLength(1);
  expect(stderr).not.toMatch(/^\s+at /m);
  return lines[0] as string;
}

// Two server starts (tsx, PGlite) and a handful of CLI processes: minutes under load.
describe('e2e/data directory lock', { timeout: 300_000 }, () => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'agent-sessions-lock-'));
  const env = { DATA_DIR: dataDir };
  const servers: ServerProcess[] = [];
  afterAll(async () => {
    await Promise.all(servers.map((s) => s.stop('SIGKILL')));
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('keys go through the running server; other openers refuse; a kill -9 leaves no lock behind', async () => {
    const first = await startServer({ env });
    servers.push(first);
    const pid = first.child.pid as number;
    const socket = path.join(dataDir, 'pgdata.sock');
    expect(existsSync(socket)).toBe(true);

    // The CLI's result alone on stdout: it parses as JSON (`keys create | jq .key`).
    const created = await runCli(['keys', 'create', '--tenant', 't1', '--scopes', 'read,write', '--name', 'while-serving'], env);
    expect(created.code, created.stderr).toBe(0);
    const made = JSON.parse(created.stdout) as { id: string; key: string; tenant: string; scopes: string[] };
    expect(made).toMatchObject({ tenant: 't1', scopes: ['read', 'write'] });
    expect(await status(first, made.key)).toBe(200);

    const listed = await runCli(['keys', 'list', '--tenant', 't1'], env);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout.trim().split('\n').map((l) => (JSON.parse(l) as { id: string }).id)).toEqual([made.id]);
    expect(listed.stdout).not.toContain('hash');

    // Never two openers: a second server, a migration and the library all refuse, naming the holder.
    const second = await runCli(['serve'], { ...env, PORT: String(await freePort()), HOST: '127.0.0.1' });
    expect(second.code).toBe(1);
    expect(oneLine(second.stderr)).toMatch(new RegExp(`in use by process ${pid}\\b`));
    const migrating = await runCli(['migrate'], env);
    expect(migrating.code).toBe(1);
    expect(oneLine(migrating.stderr)).toMatch(new RegExp(`in use by process ${pid}\\b`));
    const refused = await createSessions({ dataDir, env: {} }).then(
      async (s) => {
        await s.close();
        return null;
      },
      (err: unknown) => err,
    );
    expect(isAgentSessionsError(refused) && refused.code).toBe('data_dir_in_use');
    expect(isAgentSessionsError(refused) && refused.details).toMatchObject({ pid });
    expect(await status(first, made.key)).toBe(200);

    // A killed server's socket file stays behind; nobody accepts on it, so the next start takes it over.
    await first.stop('SIGKILL');
    expect(existsSync(socket)).toBe(true);
    const restarted = await startServer({ env });
    servers.push(restarted);
    expect(await status(restarted, made.key)).toBe(200);

    const revoked = await runCli(['keys', 'revoke', made.id], env);
    expect(revoked.code, revoked.stderr).toBe(0);
    expect(revoked.stdout).toBe(`revoked ${made.id}\n`);
    expect(await status(restarted, made.key)).toBe(401);

    // A graceful stop releases the lock and removes the socket.
    expect(await restarted.stop('SIGTERM')).toBe(0);
    expect(existsSync(socket)).toBe(false);
    const after = await runCli(['keys', 'list', '--tenant', 't1'], env);
    expect(after.code, after.stderr).toBe(0);
    expect(JSON.parse(after.stdout)).toMatchObject({ id: made.id, revokedAt: expect.any(String) });
  });
});
