/**
 * What the CLI prints, as a script sees it: the result alone on stdout (so it pipes into jq),
 * logs on stderr, a configuration or connection failure as one line with a non-zero exit and
 * no stack trace, and a healthy distributed start without a single warning.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { requireServices, uniqueKeyPrefix, uniqueNatsNames, useFreshDatabase } from '../setup/harness.js';
import { runCli, startServer, type ServerProcess } from '../setup/server-process.js';

function oneLine(stderr: string): string {
  const lines = stderr.trim().split('\n');
  expect(lines, stderr).toHaveLength(1);
  expect(stderr).not.toMatch(/^\s+at /m);
  return lines[0] as string;
}

describe('e2e/cli output: failures', { timeout: 120_000 }, () => {
  // A configuration error lists each bad value on a line of its own, under one heading.
  it('a malformed DATABASE_URL or REDIS_URL is one line for the value and exit code 2', async () => {
    const badDb = await runCli(['keys', 'list'], { DATABASE_URL: 'not a url' });
    expect(badDb.code).toBe(2);
    expect(badDb.stderr).toMatch(/^agent-sessions: invalid configuration:\n {2}- DATABASE_URL [^\n]+\n$/);
    const badRedis = await runCli(['keys', 'list'], { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/x', REDIS_URL: 'bogus' });
    expect(badRedis.code).toBe(2);
    expect(badRedis.stderr).toMatch(/^agent-sessions: invalid configuration:\n {2}- REDIS_URL [^\n]+\n$/);
    expect(badDb.stdout + badRedis.stdout).toBe('');
  });

  it('a PostgreSQL that cannot be reached (port, host) is one line naming it and exit code 1', async () => {
    for (const args of [['keys', 'list'], ['serve', '--port', '0']]) {
      const refused = await runCli(args, { DATABASE_URL: 'postgres://postgres:secret@127.0.0.1:1/nothing' });
      expect(refused.code, refused.stderr).toBe(1);
      const line = oneLine(refused.stderr);
      expect(line).toMatch(/^agent-sessions: cannot connect to PostgreSQL at 127\.0\.0\.1:1\/nothing: .*ECONNREFUSED/);
      expect(line).not.toContain('secret');
    }
    const unknown = await runCli(['keys', 'list'], { DATABASE_URL: 'postgres://postgres@no-such-host.invalid:5432/x' });
    expect(unknown.code, unknown.stderr).toBe(1);
    expect(oneLine(unknown.stderr)).toMatch(/cannot connect to PostgreSQL at no-such-host\.invalid:5432\/x: /);
  });
});

const ready = requireServices(['postgres', 'redis', 'nats'], 'e2e/cli output: distributed');
describe.skipIf(!ready)('e2e/cli output: distributed', { timeout: 180_000 }, () => {
  const db = useFreshDatabase();
  const servers: ServerProcess[] = [];
  afterAll(async () => {
    await Promise.all(servers.map((s) => s.stop('SIGKILL')));
  });

  it('keys create prints only its JSON; a healthy start logs nothing at warn or above', async () => {
    const nats = uniqueNatsNames();
    const env = {
      DATABASE_URL: db.url,
      REDIS_URL: 'redis://127.0.0.1:6379',
      KEY_PREFIX: uniqueKeyPrefix(),
      NATS_URL: 'nats://127.0.0.1:4222',
      NATS_STREAM: nats.stream,
      NATS_SUBJECT_PREFIX: nats.subjectPrefix,
      LOG_LEVEL: 'info',
    };
    // With logs at info, stdout still holds the one JSON document and nothing else.
    const created = await runCli(['keys', 'create', '--tenant', 'ops', '--scopes', 'admin'], env);
    expect(created.code, created.stderr).toBe(0);
    const key = (JSON.parse(created.stdout) as { key: string }).key;
    expect(created.stderr).toContain('database migrated');

    const server = await startServer({ env });
    servers.push(server);
    expect((await fetch(`${server.url}/v1/sessions`, { headers: { authorization: `Bearer ${key}` } })).status).toBe(200);
    const health = (await (await fetch(`${server.url}/ready`)).json()) as { dependencies: Array<{ name: string; ok: boolean }> };
    expect(health.dependencies.map((d) => [d.name, d.ok])).toEqual([
      ['postgres', true],
      ['redis', true],
      ['nats', true],
    ]);
    expect(await server.stop('SIGTERM')).toBe(0);
    expect(server.stdout()).toBe('');
    const logs = server
      .stderr()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { level: number; msg: string });
    expect(logs.map((l) => l.msg)).toContain('stopped');
    expect(logs.filter((l) => l.level >= 40)).toEqual([]);
  });
});
