/**
 * `agent-sessions doctor` as a real process: a healthy configuration passes (exit 0), embedded
 * and distributed; an embedded server's database is not opened while it runs; an unreachable
 * or silent Redis, an unreachable database and an invalid configuration each fail (exit 1)
 * with the failing check named, within the checks' deadlines.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireServices, serviceUrl, uniqueKeyPrefix, uniqueNatsNames, useFreshDatabase } from '../setup/harness.js';
import { freePort, runCli, startServer } from '../setup/server-process.js';
import { createSessions } from '../../src/internal.js';

interface JsonReport {
  ok: boolean;
  mode: string | null;
  checks: Array<{ name: string; status: 'ok' | 'warn' | 'fail' | 'skip'; latency_ms: number; detail: string }>;
}

async function doctorJson(env: Record<string, string>): Promise<{ code: number | null; report: JsonReport; elapsedMs: number }> {
  const result = await runCli(['doctor', '--json'], env, 45_000);
  expect(result.stderr).toBe('');
  return { code: result.code, report: JSON.parse(result.stdout) as JsonReport, elapsedMs: result.elapsedMs };
}

function statusOf(report: JsonReport): Record<string, string> {
  return Object.fromEntries(report.checks.map((c) => [c.name, c.status]));
}

describe('e2e/doctor/embedded', { timeout: 120_000 }, () => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'agent-sessions-doctor-'));
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  it('passes on a fresh data directory, then checks the database once it exists', async () => {
    const fresh = await doctorJson({ DATA_DIR: dataDir });
    expect(fresh.code).toBe(0);
    expect(fresh.report).toMatchObject({ ok: true, mode: 'embedded' });
    expect(statusOf(fresh.report)).toMatchObject({ config: 'ok', 'data dir': 'ok', database: 'skip', redis: 'skip', nats: 'skip' });

    expect((await runCli(['migrate'], { DATA_DIR: dataDir })).code).toBe(0);
    const migrated = await doctorJson({ DATA_DIR: dataDir });
    expect(migrated.code).toBe(0);
    expect(statusOf(migrated.report)).toMatchObject({ database: 'ok', migrations: 'ok' });
    expect(migrated.report.checks.find((c) => c.name === 'migrations')?.detail).toMatch(/none pending/);
  });

  it('prints one line per check with its status and latency', async () => {
    const result = await runCli(['doctor'], { DATA_DIR: dataDir });
    expect(result.code).toBe(0);
    const lines = result.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^ok\s+config\s+\d+\.\d ms\s+embedded/);
    expect(lines.find((l) => /\bdatabase\b/.test(l))).toMatch(/^ok\s+database\s+\d+\.\d ms\s+PostgreSQL \d+/);
    expect(lines.at(-1)).toBe('all checks passed');
  });

  it('leaves the database of a running embedded server alone (PGlite allows one process; its lock socket says who holds it)', async () => {
    const server = await startServer({ env: { DATA_DIR: dataDir, ADMIN_API_KEY: 'doctor-admin-key-0123456789' } });
    try {
      expect(existsSync(path.join(dataDir, 'pgdata.sock'))).toBe(true);
      const { code, report } = await doctorJson({ DATA_DIR: dataDir });
      expect(code).toBe(0);
      const database = report.checks.find((c) => c.name === 'database');
      expect(database).toMatchObject({ status: 'skip' });
      expect(database?.detail).toContain(`pid ${server.child.pid}`);
    } finally {
      expect(await server.stop('SIGTERM')).toBe(0);
    }
    expect(existsSync(path.join(dataDir, 'pgdata.sock'))).toBe(false);
  });

  it('leaves the database of an application using the library alone too', async () => {
    const appDir = mkdtempSync(path.join(os.tmpdir(), 'agent-sessions-doctor-lib-'));
    const sessions = await createSessions({ env: { DATA_DIR: appDir } });
    try {
      expect(existsSync(path.join(appDir, 'pgdata.sock'))).toBe(true);
      const { code, report } = await doctorJson({ DATA_DIR: appDir });
      expect(code).toBe(0);
      const database = report.checks.find((c) => c.name === 'database');
      expect(database).toMatchObject({ status: 'skip' });
      expect(database?.detail).toContain(`pid ${process.pid}`);
    } finally {
      await sessions.close();
    }
    expect(existsSync(path.join(appDir, 'pgdata.sock'))).toBe(false);
    rmSync(appDir, { recursive: true, force: true });
  });

  it('fails on an invalid configuration, naming the variable', async () => {
    const result = await runCli(['doctor'], { DATA_DIR: dataDir, PORT: 'eighty' });
    expect(result.code).toBe(1);
    expect(result.stdout).toMatch(/^FAIL\s+config\s+.*PORT must be an integer/m);
  });
});

const services = ['postgres', 'redis', 'nats'] as const;
describe.skipIf(!requireServices(services, 'e2e/doctor/distributed'))('e2e/doctor/distributed', { timeout: 120_000 }, () => {
  const db = useFreshDatabase();
  const nats = uniqueNatsNames();
  let env: Record<string, string>;
  let silent: net.Server;
  let silentPort = 0;
  const accepted = new Set<net.Socket>();

  beforeAll(async () => {
    env = {
      DATABASE_URL: db.url,
      REDIS_URL: serviceUrl('redis'),
      NATS_URL: serviceUrl('nats'),
      KEY_PREFIX: uniqueKeyPrefix(),
      NATS_STREAM: nats.stream,
      NATS_SUBJECT_PREFIX: nats.subjectPrefix,
    };
    // Accepts connections and never answers: a hung server, not a refused one.
    silent = net.createServer((socket) => {
      accepted.add(socket);
      socket.on('error', () => undefined);
      socket.on('close', () => accepted.delete(socket));
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    silentPort = (silent.address() as net.AddressInfo).port;
  });

  afterAll(async () => {
    for (const socket of accepted) socket.destroy();
    await new Promise<void>((resolve) => silent?.close(() => resolve()));
  });

  it('passes with PostgreSQL, Redis and NATS reachable; pending migrations and a missing stream are warnings', async () => {
    const { code, report } = await doctorJson(env);
    expect(code, JSON.stringify(report)).toBe(0);
    expect(report.mode).toBe('distributed');
    expect(statusOf(report)).toEqual({
      config: 'ok',
      database: 'ok',
      migrations: 'warn',
      redis: 'ok',
      nats: 'ok',
      'nats stream': 'warn',
    });
    const redis = report.checks.find((c) => c.name === 'redis');
    expect(redis?.detail).toMatch(/^Redis \d+\.\d+\.\d+ (standalone|cluster) .*keyspace/);
    expect(report.checks.find((c) => c.name === 'nats')?.detail).toMatch(/JetStream enabled/);
    for (const c of report.checks) expect(c.latency_ms).toBeGreaterThanOrEqual(0);

    expect((await runCli(['migrate'], env)).code).toBe(0);
    const after = await doctorJson(env);
    expect(statusOf(after.report).migrations).toBe('ok');
  });

  it('fails, naming Redis, when nothing listens on the Redis port', async () => {
    const port = await freePort();
    const { code, report } = await doctorJson({ ...env, REDIS_URL: `redis://127.0.0.1:${port}` });
    expect(code).toBe(1);
    expect(report.ok).toBe(false);
    const failed = report.checks.filter((c) => c.status === 'fail');
    expect(failed.map((c) => c.name)).toEqual(['redis']);
    expect(failed[0]?.detail).toContain(`127.0.0.1:${port}`);
  });

  it('fails within the deadline when Redis accepts connections but never answers', async () => {
    const result = await runCli(['doctor'], { ...env, REDIS_URL: `redis://127.0.0.1:${silentPort}` }, 45_000);
    expect(result.code).toBe(1);
    expect(result.stdout).toMatch(/^FAIL\s+redis\s+.*no answer within \d+ ms/m);
    expect(result.stdout).toMatch(/^ok\s+database/m);
  });

  it('fails, naming the database, when PostgreSQL is unreachable', async () => {
    const url = new URL(db.url);
    url.port = String(await freePort());
    const { code, report } = await doctorJson({ ...env, DATABASE_URL: url.toString() });
    expect(code).toBe(1);
    expect(statusOf(report)).toMatchObject({ database: 'fail', migrations: 'skip', redis: 'ok' });
  });
});
