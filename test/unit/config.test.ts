/** Configuration: library options are validated by the same rules as the environment, and the result is frozen. */
import { describe, expect, it } from 'vitest';
import { CONFIG_VARIABLES, ConfigError, loadConfig } from '../../src/internal.js';
import { readFileSync } from 'node:fs';

function problems(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  throw new Error('no ConfigError');
}

describe('configuration', () => {
  it('refuses a library option the environment would refuse, naming the option and its variable', () => {
    expect(problems(() => loadConfig({}, { runLeaseMs: -5 }))).toEqual([
      'runLeaseMs (RUN_LEASE_MS) must be an integer from 500 to 9007199254740991, got -5',
    ]);
    expect(problems(() => loadConfig({ RUN_LEASE_MS: '-5' }))).toEqual([
      'RUN_LEASE_MS must be an integer from 500 to 9007199254740991, got "-5"',
    ]);
    expect(problems(() => loadConfig({}, { port: 70_000, logLevel: 'loud', databaseUrl: 'mysql://x' }))).toHaveLength(3);
    expect(problems(() => loadConfig({}, { limits: { maxPageSize: 0, itemsPerAppend: 1.5 } }))).toHaveLength(2);
    expect(problems(() => loadConfig({}, { noAuth: 'yes' as unknown as boolean }))).toHaveLength(1);
    expect(problems(() => loadConfig({ REDIS_SNAPSHOT_LAYOUT: '3' }))).toHaveLength(1);
    expect(loadConfig({ REDIS_SNAPSHOT_LAYOUT: '1' }).redisSnapshotLayout).toBe(1);
    expect(loadConfig({}).redisSnapshotLayout).toBe(2);
  });

  it('refuses options it does not know (a typo is not silently ignored)', () => {
    expect(problems(() => loadConfig({}, { runLeaseMS: 1_000 } as never))).toEqual(['unknown configuration option runLeaseMS']);
    expect(problems(() => loadConfig({}, { limits: { pageSize: 5 } } as never))).toEqual(['unknown limit limits.pageSize']);
  });

  it('lets options win over the environment and normalizes them the same way', () => {
    const config = loadConfig({ RUN_LEASE_MS: '2000', IDLE_TIMEOUT_SECONDS: '60' }, { runLeaseMs: 3_000, idleTimeoutSeconds: 0 });
    expect(config.runLeaseMs).toBe(3_000);
    expect(config.idleTimeoutSeconds).toBeNull();
    expect(loadConfig({ IDLE_TIMEOUT_SECONDS: '0' }).idleTimeoutSeconds).toBeNull();
    expect(loadConfig({}, { limits: { maxPageSize: 500 } }).limits.maxPageSize).toBe(500);
    expect(loadConfig({}, { trustProxy: '10.0.0.0/8 , loopback' }).trustProxy).toBe('10.0.0.0/8,loopback');
  });

  it('never repeats a value that may hold a secret in its message', () => {
    const messages = [
      ...problems(() => loadConfig({ REDIS_URL: 'http://:s3cret@host' })),
      ...problems(() => loadConfig({ REDIS_URL: 'redis://a, not a url s3cret' })),
      ...problems(() => loadConfig({ DATABASE_URL: 'mysql://user:s3cret@host/db' })),
      ...problems(() => loadConfig({ ADMIN_API_KEY: 's3cret' })),
      ...problems(() => loadConfig({ METRICS_TOKEN: 's3cret' })),
    ];
    expect(messages).toHaveLength(5);
    for (const m of messages) expect(m).not.toContain('s3cret');
  });

  it('OTEL_TRACING: off by default, a boolean like every switch', () => {
    expect(loadConfig({}).otelTracing).toBe(false);
    expect(loadConfig({ OTEL_TRACING: 'true' }).otelTracing).toBe(true);
    expect(problems(() => loadConfig({ OTEL_TRACING: 'on' }))).toEqual(['OTEL_TRACING must be true or false, got "on"']);
  });

  it('is frozen, limits included', () => {
    const config = loadConfig({});
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.limits)).toBe(true);
  });

  it('documents every variable it reads in .env.example', () => {
    const example = readFileSync(new URL('../../.env.example', import.meta.url), 'utf8');
    const documented = new Set([...example.matchAll(/^#?\s*([A-Z][A-Z0-9_]+)=/gm)].map((m) => m[1]));
    expect(CONFIG_VARIABLES.filter((v) => !documented.has(v))).toEqual([]);
  });
});
