/**
 * `agent-sessions bench` as a real process, for a very short run: it measures every operation
 * against its raw baseline and writes the JSON report with ratios where it was told to.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { BenchReport } from '../../src/cli/bench.js';
import { requireServices, serviceUrl } from '../setup/harness.js';
import { runCli } from '../setup/server-process.js';

const OPERATIONS = [
  'raw Redis GET',
  'get (near-cache hit)',
  'get (Redis hit)',
  'raw PK SELECT',
  'get (PostgreSQL, no cache)',
  'raw single-row INSERT',
  'create (session + outbox, cached)',
  'create (PostgreSQL only, no cache)',
  'create (PostgreSQL only, near cache)',
  'raw UPDATE … RETURNING',
  'update (title)',
  'counter increment',
  'counter increment (PostgreSQL only)',
  'counter increment (PostgreSQL only, near cache)',
  'raw SET NX PX + DEL',
  'lock acquire/release',
  'Fastify hello route',
  'HTTP GET session',
  'HTTP GET session, request logs on',
  'interrupt, instance A → abort on B',
];
const BASELINES = new Set(['raw Redis GET', 'raw PK SELECT', 'raw single-row INSERT', 'raw UPDATE … RETURNING', 'raw SET NX PX + DEL', 'Fastify hello route']);
const INTERRUPT = 'interrupt, instance A → abort on B';

describe('e2e/bench', { timeout: 180_000 }, () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'agent-sessions-bench-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('refuses to run without DATABASE_URL and REDIS_URL', async () => {
    const result = await runCli(['bench', '--duration', '0.1'], {});
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/bench needs DATABASE_URL .* and REDIS_URL/);
  });

  it.skipIf(!requireServices(['postgres', 'redis'], 'e2e/bench'))('runs a short benchmark and writes its JSON report', async () => {
    const output = path.join(dir, 'nested', 'report.json');
    const env = { DATABASE_URL: serviceUrl('postgres'), REDIS_URL: serviceUrl('redis') };
    const result = await runCli(['bench', '--duration', '0.1', '--concurrency', '2', '--sessions', '100', '--interrupts', '3', '--output', output], env, 150_000);
    expect(result.code, result.stdout + result.stderr).toBe(0);
    expect(result.stdout).toContain(`written to ${output}`);
    expect(result.stdout).toMatch(/^operation\s+ops\/s\s+p50 ms\s+p99 ms\s+vs baseline\s+ratio\s+target$/m);

    const report = JSON.parse(readFileSync(output, 'utf8')) as BenchReport;
    expect(report).toMatchObject({ concurrency: 2, secondsPerOperation: 0.1 });
    expect(report.results.map((r) => r.name)).toEqual(OPERATIONS);
    for (const r of report.results) {
      expect(r.ops, r.name).toBeGreaterThan(0);
      expect(r.opsPerSec, r.name).toBeGreaterThan(0);
      expect(r.p99Ms, r.name).toBeGreaterThanOrEqual(r.p50Ms);
      if (BASELINES.has(r.name) || r.name === INTERRUPT) {
        expect(r.baseline, r.name).toBeUndefined();
      } else {
        expect(BASELINES.has(r.baseline ?? ''), r.name).toBe(true);
        expect(Number.isFinite(r.ratio), r.name).toBe(true);
        expect(typeof r.target, r.name).toBe('string');
      }
    }
    expect(report.results.filter((r) => r.met !== undefined).map((r) => r.name)).toEqual([
      'get (near-cache hit)',
      'get (Redis hit)',
      'get (PostgreSQL, no cache)',
      'create (session + outbox, cached)',
      'counter increment',
      'HTTP GET session',
      INTERRUPT,
    ]);
    expect(report.results.find((r) => r.name === INTERRUPT)?.ops).toBe(3);
  });
});
