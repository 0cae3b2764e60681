#!/usr/bin/env node
/**
 * agent-sessions command line: serve | migrate | keys (create, list, revoke) | erase | doctor | bench
 * | help. What each accepts and its --help text are in commands.ts. Configuration comes from
 * the environment (and .env); flags override it.
 */
import { readFileSync } from 'node:fs';
import { config as loadDotenv } from 'dotenv';
import { pino, type Logger } from 'pino';
import { SCOPES, TENANT_RE, type Scope } from '../core/api-keys.js';
import { isUuid } from '../core/ids.js';
import { ConfigError, loadConfig, type Config } from '../app/config.js';
import { isAgentSessionsError } from '../core/errors.js';
import { migrate } from '../adapters/postgres/migrator.js';
import { createSessions, openDatabase } from '../app/assemble.js';
import { internals } from '../app/internal.js';
import type { Sessions } from '../app/sessions.js';
import { buildApp } from '../server/app.js';
import { controlRequest, DataDirInUseError } from '../adapters/postgres/directory-lock.js';
import { KEY_OPERATIONS, parseKeyRequest, runKeyRequest, type KeyRequest, type KeyResult } from './key-commands.js';
import { ERASE_OPERATIONS, parseEraseRequest, runEraseRequest, type EraseRequest } from './erase-commands.js';
import type { ControlRequest } from '../adapters/postgres/directory-lock.js';
import { doctorReportJson, formatDoctorReport, runDoctor, unreachableDependencies } from './doctor.js';
import { exportCommand, importCommand, parseExportRequest, runExportRequest, TRANSFER_OPERATIONS } from './transfer-commands.js';
import { formatBenchTable, runBench, writeBenchReport } from './bench.js';
import { commandHelp, commandKey, overview, parseCommand, UsageError } from './commands.js';
import { loadTracing, TracingUnavailableError } from './tracing.js';

const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

function fail(message: string): never {
  process.stderr.write(`agent-sessions: ${message}\n`);
  process.exit(2);
}

function configFromFlags(values: Record<string, string | boolean | undefined>): Partial<Config> {
  const overrides: Partial<Config> = {};
  if (typeof values.port === 'string') {
    const port = Number(values.port);
    if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`--port must be 0 to 65535, got ${values.port}`);
    overrides.port = port;
  }
  if (typeof values.host === 'string') overrides.host = values.host;
  if (typeof values['data-dir'] === 'string') overrides.dataDir = values['data-dir'];
  if (values['no-auth'] === true) overrides.noAuth = true;
  return overrides;
}

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

const DEPENDENCY_NAMES: Record<string, string> = { redis: 'Redis (REDIS_URL)', nats: 'NATS (NATS_URL)' };

/** A configured Redis or NATS that cannot be reached now: one reason each. */
async function unreachable(config: Readonly<Config>): Promise<string[]> {
  const failed = await unreachableDependencies(config);
  return failed.map((c) => `${DEPENDENCY_NAMES[c.name] ?? c.name}: ${c.detail}`);
}

/**
 * A one-shot command (keys, erase) exits 1 with one line when a configured Redis or NATS
 * cannot be reached, rather than waiting on it (the database says so itself when opened).
 */
async function requireDependencies(config: Readonly<Config>): Promise<void> {
  const reasons = await unreachable(config);
  if (reasons.length === 0) return;
  process.stderr.write(`agent-sessions: ${reasons.join('; ')}\n`);
  process.exit(1);
}

async function serve(overrides: Partial<Config>, logger: Logger): Promise<void> {
  const config = loadConfig(process.env, overrides);
  if (config.noAuth && !LOOPBACK.has(config.host)) {
    fail(`--no-auth is for loopback development only; HOST is ${config.host}`);
  }
  if (config.trustProxy === true && config.authFailuresPerMinute > 0) {
    logger.warn(
      'TRUST_PROXY=true believes any X-Forwarded-For a client sends, so the wrong-key limit per address can be evaded; ' +
        'set TRUST_PROXY to your proxies\' addresses or a hop count unless a proxy always overwrites the header',
    );
  }
  const tracing = config.otelTracing
    ? await loadTracing().catch((err: unknown) => (err instanceof TracingUnavailableError ? fail(err.message) : Promise.reject(err)))
    : undefined;
  // A server starts through a Redis or NATS outage (SPEC §15: it serves from PostgreSQL, and
  // events wait in the outbox) and picks them up when they answer: one warning line each,
  // which also catches a mistyped URL.
  for (const reason of await unreachable(config)) logger.warn(`${reason}; starting without it until it answers`);
  const sessions = await createSessions({ ...config, logger, tracing });
  await ensureAdminKey(sessions, logger);
  // `agent-sessions keys|erase|export ...` on this data directory is sent here instead of opening it.
  internals(sessions).directoryLock?.serve([...KEY_OPERATIONS, ...ERASE_OPERATIONS, ...TRANSFER_OPERATIONS], (request) =>
    request.op.startsWith('erase.')
      ? runEraseRequest(internals(sessions).erasure, parseEraseRequest(request))
      : request.op.startsWith('data.')
        ? runExportRequest(internals(sessions).db, parseExportRequest(request), VERSION)
        : runKeyRequest(internals(sessions).apiKeys, parseKeyRequest(request)),
  );
  const app = await buildApp({ sessions, logger, noAuth: config.noAuth, version: VERSION });

  let stopping: Promise<void> | null = null;
  const stop = (signal: string) => {
    stopping ??= (async () => {
      logger.info({ signal, drain_timeout_ms: config.drainTimeoutMs }, 'shutting down');
      // The runs here get DRAIN_TIMEOUT_MS to finish, then up to the abort grace (15 s) to stop.
      const timer = setTimeout(() => process.exit(1), config.drainTimeoutMs + 20_000).unref();
      // No new runs are claimed from here on; the runs here drain in sessions.close().
      await internals(sessions).runs.workers.stop();
      await app.close();
      await sessions.close();
      clearTimeout(timer);
      logger.info('stopped');
    })();
    return stopping;
  };
  process.once('SIGINT', () => void stop('SIGINT'));
  process.once('SIGTERM', () => void stop('SIGTERM'));

  const address = await app.listen({ port: config.port, host: config.host });
  logger.info(
    { address, mode: sessions.mode, instanceId: config.instanceId, dataDir: sessions.mode === 'embedded' ? config.dataDir : undefined },
    `agent-sessions listening on ${address}`,
  );
}

/** Embedded mode with no key at all: make the first admin key, print it once, keep its hash. */
async function ensureAdminKey(sessions: Sessions, logger: Logger): Promise<void> {
  const { config } = sessions;
  if (config.noAuth || config.adminApiKey || (await internals(sessions).apiKeys.hasKeys())) return;
  if (sessions.mode !== 'embedded') {
    logger.warn('no API key exists: set ADMIN_API_KEY or run `agent-sessions keys create --tenant default --scopes admin`');
    return;
  }
  const { key } = await internals(sessions).apiKeys.create({ tenant: 'default', scopes: ['admin'], name: 'bootstrap admin', root: true });
  process.stdout.write(
    `\n  First start: an admin API key was generated. It is shown only this once; only its hash is stored.\n\n` +
      `    ${key}\n\n  Use it as: curl -H "Authorization: Bearer ${key}" http://${config.host}:${config.port}/v1/sessions\n\n`,
  );
}

function parseScopes(raw: string | undefined): Scope[] {
  const scopes = (raw ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  if (scopes.length === 0) fail(`--scopes is required (any of ${SCOPES.join(', ')})`);
  for (const s of scopes) if (!SCOPES.includes(s as Scope)) fail(`unknown scope ${s}; use ${SCOPES.join(', ')}`);
  return scopes as Scope[];
}

/** The keys command's request, from its arguments; usage errors exit 2 before anything opens. */
function keyRequest(args: string[], values: Record<string, string | boolean | undefined>): KeyRequest {
  const [sub, id] = args;
  if (sub === 'create') {
    const tenant = typeof values.tenant === 'string' ? values.tenant : fail('--tenant is required');
    if (!TENANT_RE.test(tenant)) fail('--tenant may hold letters, digits and _ . - (1 to 64)');
    const name = typeof values.name === 'string' ? values.name : null;
    const root = values.root === true;
    const scopes = parseScopes(values.scopes as string);
    if (root && !scopes.includes('admin')) fail('--root needs the admin scope');
    return { op: 'keys.create', tenant, scopes, name, root };
  }
  if (sub === 'list') return { op: 'keys.list', tenant: typeof values.tenant === 'string' ? values.tenant : null };
  if (sub === 'revoke') {
    if (!id || !isUuid(id)) fail('keys revoke needs a key id (UUID)');
    return { op: 'keys.revoke', id };
  }
  return fail(sub === undefined ? 'keys needs a command: create, list or revoke (see agent-sessions keys --help)' : `unknown keys command ${sub}`);
}

function printKeyResult(result: KeyResult): void {
  if (result.op === 'keys.create') {
    const { op: _op, ...created } = result;
    process.stdout.write(`${JSON.stringify(created)}\n`);
  } else if (result.op === 'keys.list') {
    for (const k of result.keys) process.stdout.write(`${JSON.stringify(k)}\n`);
  } else {
    if (!result.revoked) fail(`no key ${result.id}`);
    process.stdout.write(`revoked ${result.revoked.id}\n`);
  }
}

/**
 * Runs a command on the database, or, when a running server holds the embedded data
 * directory, through that server's control socket: the server's own services do the work, so
 * it takes effect at once and nothing else opens the directory.
 */
async function onData<R>(
  values: Record<string, string | boolean | undefined>,
  logger: Logger,
  request: ControlRequest,
  local: (sessions: Sessions) => Promise<R>,
  print: (result: R) => void,
): Promise<void> {
  let sessions: Sessions;
  const overrides = configFromFlags(values);
  await requireDependencies(loadConfig(process.env, overrides));
  try {
    sessions = await createSessions({ ...overrides, logger });
  } catch (err) {
    if (!(err instanceof DataDirInUseError)) throw err;
    const reply = await controlRequest(err.dataDir, request);
    if (reply === null) throw err; // the holder just exited: one clear line, try again
    if (!reply.ok) {
      if (reply.error.code === 'unknown_operation') {
        throw new DataDirInUseError(err.dataDir, err.pid, `it is not a running server that accepts ${request.op.split('.')[0]} commands; stop it first`);
      }
      // A refused value is a usage error (2), anything else (the server stopping) a failure (1).
      if (reply.error.code === 'validation_failed') fail(reply.error.message);
      process.stderr.write(`agent-sessions: the server holding ${err.dataDir} answered: ${reply.error.message}\n`);
      process.exit(1);
    }
    print(reply.result as R);
    return;
  }
  try {
    print(await local(sessions));
  } finally {
    await sessions.close();
  }
}

function keys(args: string[], values: Record<string, string | boolean | undefined>, logger: Logger): Promise<void> {
  const request = keyRequest(args, values);
  return onData(values, logger, request, (sessions) => runKeyRequest(internals(sessions).apiKeys, request), printKeyResult);
}

/** The erase command's request; usage errors exit 2 before anything opens. */
function eraseRequest(args: string[], values: Record<string, string | boolean | undefined>): EraseRequest {
  if (args.length > 0) fail(`erase takes no arguments, got ${args.join(' ')}`);
  const tenant = typeof values.tenant === 'string' ? values.tenant : fail('erase needs --tenant');
  if (!TENANT_RE.test(tenant)) fail('--tenant may hold letters, digits and _ . - (1 to 64)');
  if (typeof values.user === 'string') {
    if (values.user.length === 0) fail('--user must not be empty');
    return { op: 'erase.user', tenant, userId: values.user };
  }
  if (values.yes !== true) fail(`erase --tenant ${tenant} deletes the whole tenant and its keys; add --yes to confirm`);
  return { op: 'erase.tenant', tenant };
}

function erase(args: string[], values: Record<string, string | boolean | undefined>, logger: Logger): Promise<void> {
  const request = eraseRequest(args, values);
  return onData(
    values,
    logger,
    request,
    (sessions) => runEraseRequest(internals(sessions).erasure, request),
    (result) => process.stdout.write(`${JSON.stringify(result)}\n`),
  );
}

async function doctor(values: Record<string, string | boolean | undefined>): Promise<void> {
  const report = await runDoctor({ env: process.env, overrides: configFromFlags(values) });
  const text = values.json === true ? `${JSON.stringify(doctorReportJson(report))}\n` : formatDoctorReport(report);
  // Exits explicitly: a check that timed out may leave a socket behind.
  process.stdout.write(text, () => process.exit(report.ok ? 0 : 1));
}

function positiveNumber(values: Record<string, string | boolean | undefined>, flag: string, integer: boolean): number | undefined {
  const raw = values[flag];
  if (typeof raw !== 'string') return undefined;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) {
    fail(`--${flag} must be a positive ${integer ? 'integer' : 'number'}, got ${raw}`);
  }
  return n;
}

async function bench(values: Record<string, string | boolean | undefined>): Promise<void> {
  // The flags first: a wrong one is the error to report, whatever the environment holds.
  const concurrency = positiveNumber(values, 'concurrency', true);
  const secondsPerOperation = positiveNumber(values, 'duration', false);
  const sessions = positiveNumber(values, 'sessions', true);
  const interrupts = positiveNumber(values, 'interrupts', true);
  const config = loadConfig(process.env);
  if (!config.databaseUrl || !config.redisUrl) {
    fail('bench needs DATABASE_URL (a PostgreSQL server where it may create and drop a database) and REDIS_URL');
  }
  const report = await runBench({
    databaseUrl: config.databaseUrl,
    redisUrl: config.redisUrl,
    concurrency,
    secondsPerOperation,
    sessions,
    interrupts,
    // Progress is a log (stderr); the table and where the report went are the result.
    log: (line) => process.stderr.write(`${line}\n`),
  });
  process.stdout.write(`\n${formatBenchTable(report.results)}\n`);
  const file = writeBenchReport(report, typeof values.output === 'string' ? values.output : undefined);
  process.stdout.write(`\nwritten to ${file}\n`);
}

/** `help [command [subcommand]]`: that command's usage, or the overview. */
function help(args: string[]): void {
  const [command, sub] = args;
  if (command === undefined) return void process.stdout.write(`${overview(VERSION)}\n`);
  const key = commandKey(command, sub);
  if (key === null) fail(`unknown command ${command} (see agent-sessions --help)`);
  process.stdout.write(`${commandHelp(key)}\n`);
}

async function main(): Promise<void> {
  loadDotenv({ quiet: true });
  const { key, args, values, help: wantsHelp } = parseCommand(process.argv.slice(2));
  if (key === null) {
    if (values.version === true && !wantsHelp) return void process.stdout.write(`${VERSION}\n`);
    return void process.stdout.write(`${overview(VERSION)}\n`);
  }
  if (wantsHelp) return void process.stdout.write(`${commandHelp(key)}\n`);
  const command = key.split(' ')[0] as string;
  const rest = key.includes(' ') ? [key.split(' ')[1] as string, ...args] : args;
  if (command === 'help') return help(args);
  // Before the logger: an invalid configuration is one of the things doctor reports.
  if (command === 'doctor') return doctor(values);
  // Validated first, so a bad LOG_LEVEL (or anything else) is a clear message, not a stack.
  // Logs on stderr: stdout carries only the command's result (`keys create | jq .key`).
  const logger = pino({ level: loadConfig(process.env).logLevel, base: { pid: process.pid } }, pino.destination({ fd: 2, sync: true }));
  switch (command) {
    case 'serve':
      return serve(configFromFlags(values), logger);
    case 'migrate': {
      const config = loadConfig(process.env, configFromFlags(values));
      const db = openDatabase(config);
      try {
        await db.ready();
        const result = await migrate(db);
        process.stdout.write(`schema at version ${result.version}; applied: ${result.applied.join(', ') || 'nothing'}\n`);
      } finally {
        await db.close();
      }
      return;
    }
    case 'keys':
      return keys(rest, values, logger);
    case 'erase':
      return erase(rest, values, logger);
    case 'bench':
      return bench(values);
    case 'export':
    case 'import': {
      const file = values[command === 'export' ? 'output' : 'input'];
      if (rest.length > 0 || file === '') fail(`${command} takes only --${command === 'export' ? 'output' : 'input'} FILE, got ${rest.join(' ') || 'an empty name'}`);
      const options = { config: loadConfig(process.env, configFromFlags(values)), packageVersion: VERSION, logger };
      return (command === 'export' ? exportCommand : importCommand)(typeof file === 'string' ? file : null, options);
    }
    default:
      fail(`unknown command ${command}`);
  }
}

/**
 * Expected failures (a database that cannot be reached, a data directory in use, a dependency
 * refusing) are one line; only a defect of ours shows its stack.
 */
main().catch((err: unknown) => {
  if (err instanceof ConfigError || err instanceof UsageError) fail(err.message);
  const errno = (err as NodeJS.ErrnoException).syscall !== undefined;
  const expected = isAgentSessionsError(err) || errno;
  process.stderr.write(`agent-sessions: ${expected ? (err as Error).message : ((err as Error).stack ?? String(err))}\n`);
  process.exit(1);
});
