/**
 * Vitest global setup: finds or starts PostgreSQL, Redis and NATS once per run, hands the
 * results to the test files, names the suites that were skipped, and stops what it started.
 * With REQUIRE_SERVICES=1 a missing service fails the run before any test starts.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import './context.js';
import { findService, SERVICE_LABELS, SERVICE_NAMES, type Services, type StartedService } from './services.js';

function flag(value: string | undefined): boolean {
  return value !== undefined && value !== '' && !['0', 'false', 'no'].includes(value.toLowerCase());
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const env = process.env;
  const requireServices = flag(env.REQUIRE_SERVICES);
  const start = env.TEST_START_SERVICES === undefined || flag(env.TEST_START_SERVICES);
  const found = await Promise.all(SERVICE_NAMES.map((name) => findService(name, env, { start })));
  const started = found.flatMap((f) => (f.started ? [f.started] : []));
  const services = Object.fromEntries(found.map((f) => [f.info.name, f.info])) as Services;

  const stopAll = async () => {
    await Promise.all(started.map((s: StartedService) => s.stop().catch(() => undefined)));
  };

  const lines = SERVICE_NAMES.map((name) => {
    const s = services[name];
    const label = SERVICE_LABELS[name].padEnd(10);
    return s.available ? `  ${label} ${s.url} (${s.source})` : `  ${label} unavailable: ${s.reason}`;
  });
  process.stdout.write(`\ntest services:\n${lines.join('\n')}\n\n`);

  const missing = SERVICE_NAMES.filter((name) => !services[name].available);
  if (requireServices && missing.length > 0) {
    await stopAll();
    throw new Error(
      `REQUIRE_SERVICES is set and ${missing.map((n) => SERVICE_LABELS[n]).join(', ')} ` +
        `${missing.length === 1 ? 'is' : 'are'} unavailable:\n` +
        missing.map((n) => `  - ${SERVICE_LABELS[n]}: ${services[n].reason}`).join('\n'),
    );
  }

  const skipDir = mkdtempSync(path.join(os.tmpdir(), 'agent-sessions-skips-'));
  const skipLog = path.join(skipDir, 'skipped.log');
  project.provide('services', services);
  project.provide('requireServices', requireServices);
  project.provide('skipLog', skipLog);

  return async () => {
    let skipped: string[] = [];
    try {
      skipped = [...new Set(readFileSync(skipLog, 'utf8').split('\n').filter(Boolean))].sort();
    } catch {
      // No suite was skipped.
    }
    if (skipped.length > 0) process.stdout.write(`\n${skipped.join('\n')}\n`);
    rmSync(skipDir, { recursive: true, force: true });
    await stopAll();
  };
}
