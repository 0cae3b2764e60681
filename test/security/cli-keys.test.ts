/**
 * `agent-sessions keys create|list|revoke`, run as a process against a fresh database, and
 * the keys it makes used over HTTP.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, freshDatabase, startInstance, type Instance, type TestDatabase, requireServices } from './support.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const TSX = fileURLToPath(new URL('../../node_modules/.bin/tsx', import.meta.url));

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function cli(databaseUrl: string, args: string[]): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(TSX, ['src/cli/index.ts', ...args], {
      cwd: ROOT,
      env: { PATH: process.env.PATH, HOME: process.env.HOME, DATABASE_URL: databaseUrl, LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe.skipIf(!requireServices(['postgres'], 'security/cli keys'))('cli keys', { timeout: 120_000 }, () => {
  let db: TestDatabase;
  let server: Instance;

  beforeAll(async () => {
    db = await freshDatabase();
    // Migrates the fresh database, and serves the keys the CLI makes.
    server = await startInstance(db.url);
  });

  afterAll(async () => {
    await server?.close();
    await db?.drop();
  });

  it('create prints the key once; list never prints a hash; revoke refuses it everywhere', async () => {
    const created = await cli(db.url, ['keys', 'create', '--tenant', 'acme', '--scopes', 'read,write', '--name', 'ci']);
    expect(created.code, created.stderr).toBe(0);
    const made = JSON.parse(created.stdout.trim()) as { id: string; key: string; tenant: string; scopes: string[]; root: boolean };
    expect(made).toMatchObject({ tenant: 'acme', scopes: ['read', 'write'], root: false });
    expect((await call(server.app, made.key, 'POST', '/v1/sessions', {})).statusCode).toBe(201);

    const rootKey = await cli(db.url, ['keys', 'create', '--tenant', 'ops', '--scopes', 'admin', '--root']);
    expect(rootKey.code, rootKey.stderr).toBe(0);
    const rootMade = JSON.parse(rootKey.stdout.trim()) as { key: string; root: boolean };
    expect(rootMade.root).toBe(true);
    const all = await call(server.app, rootMade.key, 'GET', '/v1/admin/keys');
    expect((all.json().keys as Array<{ tenant: string }>).map((k) => k.tenant).sort()).toEqual(['acme', 'ops']);

    const listed = await cli(db.url, ['keys', 'list', '--tenant', 'acme']);
    expect(listed.code, listed.stderr).toBe(0);
    const lines = listed.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ id: made.id, tenantId: 'acme', revokedAt: null });
    expect(lines[0]).not.toHaveProperty('hash');
    expect(listed.stdout).not.toContain(made.key.slice(17));

    const revoked = await cli(db.url, ['keys', 'revoke', made.id]);
    expect(revoked.code, revoked.stderr).toBe(0);
    expect(revoked.stdout).toContain(`revoked ${made.id}`);
    expect((await call(server.app, made.key, 'GET', '/v1/sessions')).statusCode).toBe(401);
  });

  it('refuses bad arguments with exit code 2 and a message', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['keys', 'create', '--scopes', 'read'], /--tenant is required/],
      [['keys', 'create', '--tenant', 'acme', '--scopes', 'read,sudo'], /unknown scope sudo/],
      [['keys', 'create', '--tenant', 'a b', '--scopes', 'read'], /--tenant may hold/],
      [['keys', 'create', '--tenant', 'acme', '--scopes', 'read', '--root'], /--root needs the admin scope/],
      [['keys', 'revoke', 'nope'], /needs a key id/],
      [['keys', 'revoke', '00000000-0000-4000-8000-000000000000'], /no key/],
    ];
    for (const [args, message] of cases) {
      const r = await cli(db.url, args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(message);
    }
  });
});
