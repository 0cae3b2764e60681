/**
 * What test files use to reach the services the global setup found (global.ts): skip-or-fail
 * guards for suites that need a service, a fresh PostgreSQL database per suite, and unique
 * names so suites sharing one Redis or NATS never see each other's data.
 *
 *   const ready = requireServices(['postgres'], 'conformance/postgres');
 *   describe.skipIf(!ready)('conformance/postgres', () => { ... });
 */
import { randomBytes } from 'node:crypto';
import { appendFileSync } from 'node:fs';
import pg from 'pg';
import { afterAll, beforeAll, inject } from 'vitest';
import './context.js';
import { SERVICE_LABELS, type ServiceInfo, type ServiceName } from './services.js';

export type { ServiceName } from './services.js';

export function serviceInfo(name: ServiceName): ServiceInfo {
  return inject('services')[name];
}

/**
 * Whether every service in `names` is available. When one is not: with REQUIRE_SERVICES set
 * this throws (the file fails); otherwise it records `SKIPPED (no X): <suite>`, printed at
 * the end of the run, and returns false so the caller can `describe.skipIf(!ready)`.
 */
export function requireServices(names: readonly ServiceName[], suite: string): boolean {
  const services = inject('services');
  const missing = names.filter((n) => !services[n].available);
  if (missing.length === 0) return true;
  const labels = missing.map((n) => SERVICE_LABELS[n]).join(', ');
  if (inject('requireServices')) {
    throw new Error(
      `${suite} needs ${labels} and REQUIRE_SERVICES is set: ${missing.map((n) => services[n].reason).join('; ')}`,
    );
  }
  return skipSuite(`no ${labels}`, suite);
}

/**
 * Records that `suite` is skipped and why (`SKIPPED (<why>): <suite>`, printed at the end of
 * the run) and returns false, for `describe.skipIf(!...)`.
 */
export function skipSuite(why: string, suite: string): false {
  const line = `SKIPPED (${why}): ${suite}`;
  appendFileSync(inject('skipLog'), `${line}\n`);
  console.warn(line);
  return false;
}

/**
 * Like `requireServices`, for programs a suite starts itself (redis-server for a throwaway
 * Redis or a cluster): skipped by name when one is missing, a failure under REQUIRE_SERVICES.
 */
export function requireBinaries(names: readonly string[], suite: string, find: (name: string) => string | null): boolean {
  const missing = names.filter((n) => find(n) === null);
  if (missing.length === 0) return true;
  if (inject('requireServices')) {
    throw new Error(`${suite} needs ${missing.join(', ')} and REQUIRE_SERVICES is set: not found on PATH`);
  }
  return skipSuite(`no ${missing.join(', ')}`, suite);
}

/** `requireServices` for one service, returning what is known about it. */
export function requireService(name: ServiceName, suite: string): ServiceInfo {
  requireServices([name], suite);
  return serviceInfo(name);
}

/** The URL of an available service; throws when it is not (call only inside a guarded suite). */
export function serviceUrl(name: ServiceName): string {
  const info = serviceInfo(name);
  if (!info.available || info.url === null) throw new Error(`${SERVICE_LABELS[name]} is unavailable: ${info.reason}`);
  return info.url;
}

/** A short random token, safe in database names, Redis keys and NATS names. */
export function uniqueToken(): string {
  return `${Date.now().toString(36)}${randomBytes(4).toString('hex')}`;
}

export interface FreshDatabase {
  name: string;
  url: string;
  /** Drops the database, disconnecting whoever is still on it. Idempotent. */
  drop(): Promise<void>;
}

async function withAdmin<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: serviceUrl('postgres') });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Creates a uniquely named, empty database on the test PostgreSQL and returns its URL. */
export async function freshDatabase(prefix = 'as_test'): Promise<FreshDatabase> {
  const name = `${prefix}_${uniqueToken()}`;
  const ident = pg.escapeIdentifier(name);
  await withAdmin(async (client) => {
    // Concurrent CREATE DATABASE from one template can collide (55006, object in use): retry.
    for (let attempt = 0; ; attempt++) {
      try {
        await client.query(`CREATE DATABASE ${ident}`);
        return;
      } catch (err) {
        if ((err as { code?: string }).code !== '55006' || attempt >= 20) throw err;
        await new Promise((r) => setTimeout(r, 50 + Math.random() * 200));
      }
    }
  });
  const url = new URL(serviceUrl('postgres'));
  url.pathname = `/${name}`;
  let dropping: Promise<void> | null = null;
  return {
    name,
    url: url.toString(),
    drop: () => {
      dropping ??= withAdmin(async (client) => {
        await client.query(`DROP DATABASE IF EXISTS ${ident} WITH (FORCE)`);
      });
      return dropping;
    },
  };
}

/** Registers hooks that give the enclosing suite a fresh database, dropped after it. */
export function useFreshDatabase(prefix?: string): { readonly url: string } {
  let db: FreshDatabase | null = null;
  beforeAll(async () => {
    db = await freshDatabase(prefix);
  });
  afterAll(async () => {
    await db?.drop();
  });
  return {
    get url(): string {
      if (!db) throw new Error('the fresh database exists only inside the suite (after beforeAll)');
      return db.url;
    },
  };
}

/** A KEY_PREFIX no other suite uses, so suites can share one Redis. */
export function uniqueKeyPrefix(): string {
  return `as_test:${uniqueToken()}:`;
}

/**
 * A JetStream stream name and subject prefix no other suite uses. Two streams may not
 * overlap subjects, so a suite needs both to be unique.
 */
export function uniqueNatsNames(): { stream: string; subjectPrefix: string } {
  const token = uniqueToken();
  return { stream: `AS_TEST_${token.toUpperCase()}`, subjectPrefix: `as_test_${token}` };
}

export function uniqueStreamName(): string {
  return uniqueNatsNames().stream;
}

/**
 * Polls `read` until it holds, for at most `ms` (checking every `everyMs`); resolves to how
 * long it took, so tests can print the lag they waited for.
 */
export async function within(ms: number, read: () => Promise<boolean>, everyMs = 1): Promise<number> {
  const started = Date.now();
  while (!(await read())) {
    if (Date.now() - started > ms) throw new Error(`not true within ${ms} ms`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
  return Date.now() - started;
}
