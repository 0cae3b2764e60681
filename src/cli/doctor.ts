/**
 * `agent-sessions doctor`: checks a configuration the way `serve` would use it, one line per
 * check with its latency — configuration, data directory (embedded), database and its
 * version, migrations, Redis, NATS JetStream and the events stream. Every network check has
 * a deadline, so an unreachable service is a FAIL line, never a hang. Nothing is changed:
 * no migration is applied, no stream created, no key written.
 */
import { accessSync, constants, existsSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { createClient } from 'redis';
import { connect as connectNats, nanos, type NatsConnection } from '@nats-io/transport-node';
import { JetStreamApiError, jetstreamManager } from '@nats-io/jetstream';
import { ConfigError, loadConfig, type Config } from '../app/config.js';
import { PgliteDatabase } from '../adapters/postgres/database.js';
import { directoryHolder } from '../adapters/postgres/directory-lock.js';
import { loadMigrations } from '../adapters/postgres/migrator.js';
import { MIN_REDIS_VERSION, redisVersionSupported } from '../adapters/redis/guarded-redis.js';
import { isClusterUrl, redisUrls } from '../adapters/redis/connection.js';
import { MIN_DUPLICATE_WINDOW_MS } from '../adapters/nats/jetstream-publisher.js';
import { MIN_POSTGRES_VERSION } from '../app/assemble.js';
import type { Mode } from '../core/stats.js';

export type CheckStatus = 'ok' | 'warn' | 'fail' | 'skip';

export interface DoctorCheck {
  name: string;
  /** `warn` and `skip` do not fail the run; `fail` does. */
  status: CheckStatus;
  latencyMs: number;
  detail: string;
}

export interface DoctorReport {
  /** No check failed. */
  ok: boolean;
  /** null when the configuration is invalid. */
  mode: Mode | null;
  checks: DoctorCheck[];
}

export interface DoctorOptions {
  env?: Record<string, string | undefined>;
  overrides?: Partial<Config>;
  /** Deadline of each check (default 5 s). */
  timeoutMs?: number;
}

/** The file an embedded server keeps in DATA_DIR while it runs (PGlite allows one process). */

const STREAM_NOT_FOUND = 10059;

class CheckFailed extends Error {}

interface Outcome {
  status?: CheckStatus;
  detail: string;
}

/** The message of an error, including what Node hides in AggregateError (both ::1 and 127.0.0.1 refused). */
export function describeError(err: unknown): string {
  if (err instanceof AggregateError && err.errors.length > 0) return describeError(err.errors[0]);
  const e = err as { message?: unknown; code?: unknown; cause?: unknown };
  const message = typeof e?.message === 'string' && e.message !== '' ? e.message : typeof e?.code === 'string' ? e.code : String(err);
  const cause = e?.cause ? describeError(e.cause) : '';
  return cause && !message.includes(cause) ? `${message}: ${cause}` : message;
}

/**
 * A URL without its secrets, for printing: the password, the user (a NATS token travels as
 * the user), and query parameters that look like credentials.
 */
export function redactUrl(raw: string): string {
  try {
    const u = new URL(raw);
    if (u.username) u.username = '***';
    if (u.password) u.password = '***';
    for (const k of [...u.searchParams.keys()]) if (/pass|token|secret|key|auth/i.test(k)) u.searchParams.set(k, '***');
    return u.toString();
  } catch {
    return '(unparsable URL)';
  }
}

function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new CheckFailed(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function check(name: string, timeoutMs: number, fn: () => Promise<Outcome>): Promise<DoctorCheck> {
  const started = performance.now();
  try {
    const outcome = await withDeadline(fn(), timeoutMs, name);
    return { name, status: outcome.status ?? 'ok', latencyMs: performance.now() - started, detail: outcome.detail };
  } catch (err) {
    return { name, status: 'fail', latencyMs: performance.now() - started, detail: describeError(err) };
  }
}

function skipped(name: string, detail: string): DoctorCheck {
  return { name, status: 'skip', latencyMs: 0, detail };
}

function checkDataDir(dataDir: string): Outcome {
  const dir = path.resolve(dataDir);
  if (existsSync(dir)) {
    if (!statSync(dir).isDirectory()) throw new CheckFailed(`${dir} is not a directory`);
    const probe = path.join(dir, `.doctor-${process.pid}`);
    writeFileSync(probe, 'ok');
    unlinkSync(probe);
    return { detail: `${dir} is writable` };
  }
  // Not there yet: serve creates it, so the nearest existing parent must be writable.
  let parent = path.dirname(dir);
  while (!existsSync(parent)) parent = path.dirname(parent);
  accessSync(parent, constants.W_OK);
  return { detail: `${dir} does not exist yet; serve creates it (${parent} is writable)` };
}

/** A database handle for the checks: a single pg client or the embedded PGlite. */
interface Probe {
  query<R>(sql: string): Promise<R[]>;
  close(): Promise<void>;
}

async function openPostgres(url: string, timeoutMs: number): Promise<Probe> {
  const client = new pg.Client({
    connectionString: url,
    connectionTimeoutMillis: timeoutMs,
    query_timeout: timeoutMs,
    application_name: 'agent-sessions doctor',
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (err) {
    await client.end().catch(() => undefined);
    throw err;
  }
  return {
    query: async <R>(sql: string) => (await client.query(sql)).rows as R[],
    close: () => client.end().catch(() => undefined),
  };
}

async function openPglite(pgdata: string): Promise<Probe> {
  const db = new PgliteDatabase({ dataDir: pgdata });
  await db.ready();
  return { query: (sql) => db.query(sql), close: () => db.close() };
}

async function databaseChecks(config: Readonly<Config>, timeoutMs: number): Promise<DoctorCheck[]> {
  const embedded = config.databaseUrl === null;
  let where: string;
  let open: () => Promise<Probe>;
  if (embedded) {
    if (config.dataDir === ':memory:') return [skipped('database', 'DATA_DIR=:memory: (a new in-memory database at every start)')];
    const pgdata = path.resolve(config.dataDir, 'pgdata');
    if (!existsSync(path.join(pgdata, 'PG_VERSION'))) {
      return [skipped('database', `no database in ${pgdata} yet; the first start creates it`)];
    }
    const holder = await directoryHolder(pgdata);
    if (holder !== null) {
      const pid = holder.pid === null ? 'another process' : `pid ${holder.pid}`;
      return [skipped('database', `in use by a running process (${pid}); PGlite allows one process, so it was not opened`)];
    }
    where = `PGlite in ${pgdata}`;
    open = () => openPglite(pgdata);
  } else {
    where = redactUrl(config.databaseUrl as string);
    open = () => openPostgres(config.databaseUrl as string, timeoutMs);
  }

  const held: { db: Probe | null } = { db: null };
  // PGlite starts slowly (WebAssembly): its deadline is longer than a network round trip's.
  const reachDeadline = embedded ? Math.max(timeoutMs, 30_000) : timeoutMs;
  const reach = await check('database', reachDeadline, async () => {
    const db = await open();
    held.db = db;
    const [row] = await db.query<{ num: string; version: string }>(
      `SELECT current_setting('server_version_num') AS num, current_setting('server_version') AS version`,
    );
    const num = Number(row?.num ?? 0);
    if (num < MIN_POSTGRES_VERSION) {
      throw new CheckFailed(`PostgreSQL ${row?.version ?? num} at ${where} is too old: agent-sessions needs ${MIN_POSTGRES_VERSION / 10_000} or newer`);
    }
    return { detail: `PostgreSQL ${row?.version} (${where})` };
  });
  const opened = held.db;
  if (reach.status === 'fail' || opened === null) {
    await opened?.close();
    return [reach, skipped('migrations', 'the database was not reached')];
  }
  const migrations = await check('migrations', timeoutMs, async () => {
    const known = loadMigrations();
    const latest = known.at(-1)?.version ?? 0;
    let applied: number[] = [];
    try {
      applied = (await opened.query<{ version: number }>('SELECT version FROM agent_sessions_migrations ORDER BY version')).map((r) =>
        Number(r.version),
      );
    } catch (err) {
      // 42P01: no ledger yet, so nothing is applied.
      if ((err as { code?: string }).code !== '42P01' && (err as { cause?: { code?: string } }).cause?.code !== '42P01') throw err;
    }
    const newest = Math.max(0, ...applied);
    if (newest > latest) {
      throw new CheckFailed(`the schema is at version ${newest} but this build knows only up to ${latest}; upgrade agent-sessions`);
    }
    const done = new Set(applied);
    const pending = known.filter((m) => !done.has(m.version)).map((m) => m.name);
    if (pending.length === 0) return { detail: `schema at version ${latest}, ${applied.length} applied, none pending` };
    return {
      status: 'warn',
      detail: `${pending.length} pending (${pending.join(', ')}): applied at the next start, or by \`agent-sessions migrate\``,
    };
  });
  await opened.close();
  return [reach, migrations];
}

async function redisCheck(config: Readonly<Config>, timeoutMs: number): Promise<DoctorCheck> {
  const url = config.redisUrl as string;
  const clusterConfigured = isClusterUrl({ url, cluster: config.redisCluster });
  return check('redis', timeoutMs, async () => {
    const parts: string[] = [];
    for (const node of redisUrls(url)) {
      const client = createClient({
        url: node,
        socket: { connectTimeout: Math.min(timeoutMs, 2_000), reconnectStrategy: false },
        disableOfflineQueue: true,
      });
      client.on('error', () => undefined);
      try {
        try {
          await client.connect();
        } catch (err) {
          throw new CheckFailed(`cannot connect to ${redactUrl(node)}: ${describeError(err)}`);
        }
        await client.ping();
        const server = String(await client.info('server'));
        const version = /redis_version:([\d.]+)/.exec(server)?.[1] ?? 'unknown';
        const mode = /redis_mode:(\w+)/.exec(server)?.[1] ?? 'standalone';
        if (!redisVersionSupported(version)) {
          throw new CheckFailed(`Redis ${version} at ${redactUrl(node)} is too old: agent-sessions needs Redis ${MIN_REDIS_VERSION} or newer`);
        }
        if (clusterConfigured && mode !== 'cluster') {
          throw new CheckFailed(`REDIS_CLUSTER is set (or several URLs given) but ${redactUrl(node)} runs ${mode}`);
        }
        if (!clusterConfigured && mode === 'cluster') {
          throw new CheckFailed(`${redactUrl(node)} is a Redis Cluster node: set REDIS_CLUSTER=1`);
        }
        let state = '';
        if (mode === 'cluster') {
          const info = String(await client.sendCommand(['CLUSTER', 'INFO']));
          state = `, cluster_state ${/cluster_state:(\w+)/.exec(info)?.[1] ?? 'unknown'}`;
        }
        const keyspace = String(await client.info('keyspace'))
          .split(/\r?\n/)
          .map((line) => /^(db\d+):keys=(\d+)/.exec(line))
          .filter((m): m is RegExpExecArray => m !== null)
          .map((m) => `${m[1]} keys=${m[2]}`);
        parts.push(`Redis ${version} ${mode}${state} at ${redactUrl(node)}, keyspace ${keyspace.join(' ') || 'empty'}`);
      } finally {
        // destroy() throws on a client that never opened.
        if (client.isOpen) client.destroy();
      }
    }
    return { detail: `${parts.join('; ')} (key prefix ${config.keyPrefix})` };
  });
}

async function natsChecks(config: Readonly<Config>, timeoutMs: number): Promise<DoctorCheck[]> {
  const url = config.natsUrl as string;
  const held: { nc: NatsConnection | null } = { nc: null };
  try {
    const server = await check('nats', timeoutMs, async () => {
      let nc: NatsConnection;
      try {
        nc = await connectNats({ servers: url, timeout: Math.min(timeoutMs, 2_000), reconnect: false, name: 'agent-sessions doctor' });
      } catch (err) {
        throw new CheckFailed(`cannot connect to ${redactUrl(url)}: ${describeError(err)}`);
      }
      held.nc = nc;
      await nc.rtt();
      const info = nc.info;
      if (!info?.jetstream) throw new CheckFailed(`NATS ${info?.version ?? ''} at ${redactUrl(url)} has JetStream off (start nats-server with -js)`);
      return { detail: `NATS ${info.version} at ${redactUrl(url)}, JetStream enabled` };
    });
    const conn = held.nc;
    if (server.status === 'fail' || conn === null) return [server, skipped('nats stream', 'NATS was not reached')];
    const stream = await check('nats stream', timeoutMs, async () => {
      const jsm = await jetstreamManager(conn);
      const name = config.natsStream;
      const subject = `${config.natsSubjectPrefix}.>`;
      try {
        const info = await jsm.streams.info(name);
        const subjects = info.config.subjects ?? [];
        const window = info.config.duplicate_window ?? 0;
        const detail = `${name}: ${info.state.messages} messages, subjects ${subjects.join(' ')}, duplicate window ${Math.round(window / 1e9)} s`;
        if (!subjects.includes(subject) || window < nanos(MIN_DUPLICATE_WINDOW_MS)) {
          return { status: 'warn', detail: `${detail}; serve will add ${subject} and a window of at least ${MIN_DUPLICATE_WINDOW_MS / 1000} s` };
        }
        return { detail };
      } catch (err) {
        if (err instanceof JetStreamApiError && err.code === STREAM_NOT_FOUND) {
          return { status: 'warn', detail: `stream ${name} does not exist yet; serve creates it` };
        }
        throw err;
      }
    });
    return [server, stream];
  } finally {
    await held.nc?.close().catch(() => undefined);
  }
}

/**
 * Redis and NATS as configured, side by side, with doctor's deadlines: the checks that fail.
 * `serve`, `keys` and `erase` refuse to start on one (the library starts without them and
 * waits for them; at start a wrong URL and an outage look alike, and a wrong URL should not
 * go unnoticed behind one warning).
 */
export async function unreachableDependencies(config: Readonly<Config>, timeoutMs = 5_000): Promise<DoctorCheck[]> {
  const checks = await Promise.all([
    config.redisUrl ? redisCheck(config, timeoutMs) : null,
    config.natsUrl ? natsChecks(config, timeoutMs).then(([server]) => server ?? null) : null,
  ]);
  return checks.filter((c): c is DoctorCheck => c !== null && c.status === 'fail');
}

export async function runDoctor(options: DoctorOptions = {}): Promise<DoctorReport> {
  const timeoutMs = options.timeoutMs ?? 5_000;
  const started = performance.now();
  let config: Readonly<Config>;
  try {
    config = loadConfig(options.env ?? process.env, options.overrides);
  } catch (err) {
    const detail = err instanceof ConfigError ? err.problems.join('; ') : describeError(err);
    return { ok: false, mode: null, checks: [{ name: 'config', status: 'fail', latencyMs: performance.now() - started, detail }] };
  }
  const mode: Mode = config.databaseUrl ? 'distributed' : 'embedded';
  const extras = [config.redisUrl && 'Redis', config.natsUrl && 'NATS'].filter(Boolean);
  const checks: DoctorCheck[] = [
    {
      name: 'config',
      status: 'ok',
      latencyMs: performance.now() - started,
      detail:
        mode === 'embedded'
          ? `embedded (DATA_DIR ${config.dataDir})${extras.length ? ` with ${extras.join(' and ')}` : ''}`
          : `distributed: PostgreSQL${extras.length ? `, ${extras.join(', ')}` : ''}`,
    },
  ];
  if (mode === 'embedded') {
    checks.push(
      config.dataDir === ':memory:'
        ? skipped('data dir', 'DATA_DIR=:memory: (nothing on disk)')
        : await check('data dir', timeoutMs, async () => checkDataDir(config.dataDir)),
    );
  }
  // Independent services are checked side by side, so the run takes the slowest, not the sum.
  const [database, redis, nats] = await Promise.all([
    databaseChecks(config, timeoutMs),
    config.redisUrl ? redisCheck(config, timeoutMs) : Promise.resolve(skipped('redis', 'REDIS_URL not set')),
    config.natsUrl ? natsChecks(config, timeoutMs) : Promise.resolve([skipped('nats', 'NATS_URL not set')]),
  ]);
  checks.push(...database, redis, ...nats);
  return { ok: checks.every((c) => c.status !== 'fail'), mode, checks };
}

const LABELS: Record<CheckStatus, string> = { ok: 'ok', warn: 'warn', fail: 'FAIL', skip: 'skip' };

export function formatDoctorReport(report: DoctorReport): string {
  const width = Math.max(...report.checks.map((c) => c.name.length));
  const lines = report.checks.map((c) => {
    const latency = c.status === 'skip' ? '' : `${c.latencyMs.toFixed(1)} ms`;
    return `${LABELS[c.status].padEnd(4)}  ${c.name.padEnd(width)}  ${latency.padStart(10)}  ${c.detail}`;
  });
  const failed = report.checks.filter((c) => c.status === 'fail').length;
  lines.push(failed === 0 ? 'all checks passed' : `${failed} check${failed === 1 ? '' : 's'} failed`);
  return `${lines.join('\n')}\n`;
}

export function doctorReportJson(report: DoctorReport): Record<string, unknown> {
  return {
    ok: report.ok,
    mode: report.mode,
    checks: report.checks.map((c) => ({ name: c.name, status: c.status, latency_ms: Math.round(c.latencyMs * 100) / 100, detail: c.detail })),
  };
}
