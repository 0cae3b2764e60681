/**
 * The real CLI against dependencies it cannot reach: a DATABASE_URL pointing at a closed port
 * or an unknown host is one line on stderr naming PostgreSQL, exit code 1 and no stack trace,
 * for serve, migrate and keys; a REDIS_URL or NATS_URL likewise for keys, while serve starts
 * through it (SPEC §15) with one warning naming it. migrate touches the database only. And a
 * healthy distributed start (PostgreSQL, Redis and NATS) logs no warning at all.
 */
import { describe, expect, it } from 'vitest';
import { requireServices, serviceUrl, uniqueKeyPrefix, uniqueToken, useFreshDatabase } from '../setup/harness.js';
import { freePort, runCli, startServer, type CliResult } from '../setup/server-process.js';

/** An unknown host: `.invalid` never resolves (RFC 6761). */
const NO_HOST = 'nosuchhost.invalid';

function expectOneLineFailure(result: CliResult, dependency: RegExp, what: string): void {
  const context = `${what}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`;
  expect(result.code, context).toBe(1);
  expect(result.stdout, context).toBe('');
  const lines = result.stderr.trim().split('\n');
  expect(lines, context).toHaveLength(1);
  expect(lines[0], context).toMatch(/^agent-sessions: /);
  expect(lines[0], context).toMatch(dependency);
  expect(result.stderr, context).not.toMatch(/\n\s+at |"level"/);
}

/** Runs the cases a few at a time: each is a Node process with tsx, on shared cores. */
async function runAll(cases: Array<{ args: string[]; env: Record<string, string> }>): Promise<CliResult[]> {
  const out: CliResult[] = [];
  for (let i = 0; i < cases.length; i += 3) {
    out.push(...(await Promise.all(cases.slice(i, i + 3).map((c) => runCli(c.args, { LOG_LEVEL: 'info', ...c.env }, 90_000)))));
  }
  return out;
}

const COMMANDS = [['serve', '--port', '0'], ['migrate'], ['keys', 'list']];

describe('e2e/cli/failures/database', { timeout: 300_000 }, () => {
  it('a DATABASE_URL on a closed port or an unknown host: one line naming PostgreSQL, exit 1', async () => {
    const closed = await freePort();
    const urls = [`postgres://postgres@127.0.0.1:${closed}/postgres`, `postgres://postgres@${NO_HOST}:5432/postgres`];
    const cases = urls.flatMap((url) => COMMANDS.map((args) => ({ args, env: { DATABASE_URL: url, ADMIN_API_KEY: 'failure-test-key-0123456789' } })));
    const results = await runAll(cases);
    results.forEach((r, i) => {
      const c = cases[i] as (typeof cases)[number];
      expectOneLineFailure(r, /cannot connect to PostgreSQL at /, `${c.args.join(' ')} with ${c.env.DATABASE_URL}`);
    });
  });
});

/** A closed port and an unknown host for Redis and for NATS, with the line that names each. */
async function badDependencies(): Promise<Array<{ env: Record<string, string>; dependency: RegExp }>> {
  const [redisPort, natsPort] = [await freePort(), await freePort()];
  return [
    { env: { REDIS_URL: `redis://127.0.0.1:${redisPort}` }, dependency: /Redis \(REDIS_URL\): cannot connect to redis:\/\/127\.0\.0\.1:\d+/ },
    { env: { REDIS_URL: `redis://${NO_HOST}:6379` }, dependency: /Redis \(REDIS_URL\): cannot connect to .*ENOTFOUND/ },
    { env: { NATS_URL: `nats://127.0.0.1:${natsPort}` }, dependency: /NATS \(NATS_URL\): cannot connect to nats:\/\/127\.0\.0\.1:\d+/ },
    { env: { NATS_URL: `nats://${NO_HOST}:4222` }, dependency: /NATS \(NATS_URL\): cannot connect to .*ENOTFOUND/ },
  ];
}

const pgReady = requireServices(['postgres'], 'e2e/cli/failures/redis-nats');
describe.skipIf(!pgReady)('e2e/cli/failures/redis-nats', { timeout: 300_000 }, () => {
  const db = useFreshDatabase();

  it('a REDIS_URL or NATS_URL on a closed port or an unknown host: keys is one line naming it, exit 1', async () => {
    const cases = (await badDependencies()).map((b) => ({
      args: ['keys', 'list'],
      env: { DATABASE_URL: db.url, ADMIN_API_KEY: 'failure-test-key-0123456789', ...b.env },
      dependency: b.dependency,
    }));
    const results = await runAll(cases);
    results.forEach((r, i) => {
      const c = cases[i] as (typeof cases)[number];
      expectOneLineFailure(r, c.dependency, `${c.args.join(' ')} with ${JSON.stringify(c.env)}`);
    });
  });

  it('serve starts through a Redis or NATS it cannot reach (SPEC §15): one warning naming it, no stack, and it serves', async () => {
    for (const b of await badDependencies()) {
      const server = await startServer({ env: { DATABASE_URL: db.url, ADMIN_API_KEY: 'failure-test-key-0123456789', LOG_LEVEL: 'info', ...b.env } });
      try {
        const created = await fetch(`${server.url}/v1/sessions`, {
          method: 'POST',
          headers: { authorization: 'Bearer failure-test-key-0123456789', 'content-type': 'application/json' },
          body: '{}',
        });
        expect(created.status, JSON.stringify(b.env)).toBe(201);
        const lines = server.stderr().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { level: number; msg: string; err?: unknown });
        const named = lines.filter((l) => b.dependency.test(l.msg));
        expect(named, server.stderr()).toHaveLength(1);
        expect(named[0]?.level).toBe(40);
        expect(named[0]?.msg).toMatch(/starting without it until it answers$/);
        expect(named[0]?.err).toBeUndefined();
      } finally {
        await server.stop('SIGKILL');
      }
    }
  });

  it('migrate needs the database only: a closed REDIS_URL or NATS_URL does not stop it', async () => {
    const result = await runCli(['migrate'], { DATABASE_URL: db.url, REDIS_URL: `redis://127.0.0.1:${await freePort()}`, NATS_URL: `nats://127.0.0.1:${await freePort()}` }, 90_000);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^schema at version \d+/);
    expect(result.stderr).toBe('');
  });
});

const allReady = requireServices(['postgres', 'redis', 'nats'], 'e2e/cli/failures/healthy');
describe.skipIf(!allReady)('e2e/cli/failures/healthy', { timeout: 300_000 }, () => {
  const db = useFreshDatabase();

  it('a healthy distributed start logs no warning, and keys list neither', async () => {
    const token = uniqueToken();
    const env = {
      DATABASE_URL: db.url,
      REDIS_URL: serviceUrl('redis'),
      NATS_URL: serviceUrl('nats'),
      KEY_PREFIX: uniqueKeyPrefix(),
      NATS_STREAM: `AS_TEST_${token}`,
      NATS_SUBJECT_PREFIX: `as_test_${token}`,
      ADMIN_API_KEY: 'healthy-start-key-0123456789',
      LOG_LEVEL: 'info',
    };
    const server = await startServer({ env });
    try {
      const ready = await fetch(`${server.url}/ready`);
      expect(ready.status).toBe(200);
      const listed = await runCli(['keys', 'list'], env, 90_000);
      expect(listed.code, listed.stderr).toBe(0);
      expect(await server.stop('SIGTERM')).toBe(0);
      for (const [who, stderr] of [['serve', server.stderr()], ['keys list', listed.stderr]] as const) {
        const lines = stderr.split('\n').filter(Boolean);
        const warnings = lines.filter((l) => !l.startsWith('{') || (JSON.parse(l) as { level: number }).level >= 40);
        expect(warnings, `${who}:\n${stderr}`).toEqual([]);
      }
      expect(server.stderr()).toContain('agent-sessions listening on');
    } finally {
      await server.stop('SIGKILL');
    }
  });
});
