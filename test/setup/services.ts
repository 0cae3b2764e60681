/**
 * Finding, probing and starting the real services the tests talk to: PostgreSQL, Redis and
 * NATS. Used by the global setup only (it runs once, in the main Vitest process); test files
 * read the outcome through `inject('services')` (see harness.ts).
 *
 * Order for each service: the URL from the environment (DATABASE_URL / REDIS_URL / NATS_URL)
 * if set; else the default local port; else a throwaway instance started from the binaries
 * if they are installed (unless TEST_START_SERVICES=0). What is started is stopped at teardown.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import pg from 'pg';

export const SERVICE_NAMES = ['postgres', 'redis', 'nats'] as const;
export type ServiceName = (typeof SERVICE_NAMES)[number];

export const SERVICE_LABELS: Record<ServiceName, string> = {
  postgres: 'PostgreSQL',
  redis: 'Redis',
  nats: 'NATS',
};

/** What the tests learn about one service. Plain data: it crosses into the test workers. */
export interface ServiceInfo {
  name: ServiceName;
  available: boolean;
  /** A URL the tests can connect to; null when unavailable. */
  url: string | null;
  /** Where it came from: the environment, the default local port, or started for this run. */
  source: 'env' | 'default' | 'started' | 'none';
  /** Why it is unavailable (or notes on how it was found). */
  reason: string | null;
}

export type Services = Record<ServiceName, ServiceInfo>;

/** A running service this process started; `stop` is idempotent. */
export interface StartedService {
  url: string;
  stop(): Promise<void>;
}

/** A throwaway server a fault test may take down and bring back on the same port and data. */
export interface RestartableService extends StartedService {
  /** Stops the server process, keeping its data (fast shutdown: connections are cut). */
  halt(): Promise<void>;
  /** Starts it again on the same port and data. */
  resume(): Promise<void>;
}

const ENV_VARS: Record<ServiceName, string> = { postgres: 'DATABASE_URL', redis: 'REDIS_URL', nats: 'NATS_URL' };
const DEFAULT_URLS: Record<ServiceName, string> = {
  postgres: 'postgres://postgres@127.0.0.1:5432/postgres',
  redis: 'redis://127.0.0.1:6379',
  nats: 'nats://127.0.0.1:4222',
};
const PROBE_TIMEOUT_MS = 2_000;
const START_TIMEOUT_MS = 30_000;

export function envVarOf(name: ServiceName): string {
  return ENV_VARS[name];
}

// ---------------------------------------------------------------------------------------------
// Probes: does something answer at this URL, speaking the right protocol?

export async function probe(name: ServiceName, url: string): Promise<void> {
  if (name === 'postgres') return probePostgres(url);
  if (name === 'redis') return probeRedis(url);
  return probeNats(url);
}

async function probePostgres(url: string): Promise<void> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: PROBE_TIMEOUT_MS });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('SELECT 1');
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Opens a TCP (or TLS) connection, writes `send`, and resolves with what arrives until `done`. */
function converse(url: URL, defaultPort: number, useTls: boolean, send: string, done: (text: string) => boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    const host = url.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1';
    const port = Number(url.port || defaultPort);
    const socket = useTls ? tls.connect({ host, port, servername: host }) : net.connect({ host, port });
    let text = '';
    let settled = false;
    const finish = (err: Error | null) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(text);
    };
    const timer = setTimeout(() => finish(new Error(`no answer from ${host}:${port} within ${PROBE_TIMEOUT_MS} ms`)), PROBE_TIMEOUT_MS);
    socket.setEncoding('utf8');
    socket.once(useTls ? 'secureConnect' : 'connect', () => {
      if (send) socket.write(send);
    });
    socket.on('data', (chunk: string) => {
      text += chunk;
      if (done(text)) finish(null);
    });
    socket.once('error', (err) => finish(err));
    socket.once('close', () => finish(new Error(`connection to ${host}:${port} closed: ${JSON.stringify(text.slice(0, 200))}`)));
  });
}

function respCommand(...args: string[]): string {
  return `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;
}

async function probeRedis(raw: string): Promise<void> {
  const url = new URL(raw);
  let send = '';
  const password = decodeURIComponent(url.password);
  const username = decodeURIComponent(url.username);
  if (password) send += username ? respCommand('AUTH', username, password) : respCommand('AUTH', password);
  send += respCommand('PING');
  const text = await converse(url, 6379, url.protocol === 'rediss:', send, (t) => /\+PONG\r\n|-[^\r]*\r\n/.test(t));
  if (!text.includes('+PONG')) throw new Error(`Redis answered ${JSON.stringify(text.trim())}`);
}

async function probeNats(raw: string): Promise<void> {
  const url = new URL(raw);
  // A NATS server greets every client with an INFO line before anything is sent.
  const text = await converse(url, 4222, false, '', (t) => t.includes('\r\n'));
  if (!text.startsWith('INFO ')) throw new Error(`not a NATS server: ${JSON.stringify(text.slice(0, 80))}`);
}

// ---------------------------------------------------------------------------------------------
// Starting throwaway instances from installed binaries.

/** Ports this process has handed out: the kernel may offer a port again once it is closed. */
const handedOut = new Set<number>();

/**
 * A port that was free a moment ago (the caller's server binds it later, so another process
 * could still take it in between; servers started on it should treat EADDRINUSE as "try
 * another port"). Never the same port twice in one process, so servers started together, as
 * three nodes of a cluster or two instances at once, cannot be handed one port.
 */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = net.createServer();
      server.unref();
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        const address = server.address();
        const bound = typeof address === 'object' && address ? address.port : 0;
        server.close(() => resolve(bound));
      });
    });
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
}

/** The path of `binary` in `extraDirs` or on PATH, or null. */
export function which(binary: string, extraDirs: string[] = []): string | null {
  for (const dir of [...extraDirs, ...(process.env.PATH ?? '').split(path.delimiter)]) {
    if (!dir) continue;
    const candidate = path.join(dir, binary);
    if (existsSync(candidate)) return candidate;
  }
  return null;
}

/** The bin directory of the newest PostgreSQL installed the Debian way, or one on PATH. */
function postgresBinDir(): string | null {
  const root = '/usr/lib/postgresql';
  if (existsSync(root)) {
    const versions = readdirSync(root)
      .filter((v) => existsSync(path.join(root, v, 'bin', 'initdb')))
      .sort((a, b) => Number.parseFloat(b) - Number.parseFloat(a));
    if (versions[0]) return path.join(root, versions[0], 'bin');
  }
  const initdb = which('initdb');
  return initdb ? path.dirname(initdb) : null;
}

async function waitFor(name: ServiceName, url: string, child: ChildProcess | null, log: () => string): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  let lastError: unknown = null;
  while (Date.now() < deadline) {
    if (child && child.exitCode !== null) throw new Error(`${SERVICE_LABELS[name]} exited with ${child.exitCode}: ${log()}`);
    try {
      await probe(name, url);
      return;
    } catch (err) {
      lastError = err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error(`${SERVICE_LABELS[name]} did not answer within ${START_TIMEOUT_MS} ms: ${String(lastError)} ${log()}`);
}

function run(command: string, args: string[]): { ok: boolean; output: string } {
  const result = spawnSync(command, args, { encoding: 'utf8', timeout: START_TIMEOUT_MS });
  const output = `${result.stdout ?? ''}${result.stderr ?? ''}${result.error ? String(result.error) : ''}`.trim();
  return { ok: result.status === 0, output };
}

/** Spawns a long-running server as our child; stopping sends SIGTERM, then SIGKILL. */
function spawnServer(command: string, args: string[]): { child: ChildProcess; log: () => string; stop: () => Promise<void> } {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString('utf8')).slice(-4_000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  child.on('error', (err) => keep(Buffer.from(String(err))));
  let stopping: Promise<void> | null = null;
  const stop = () => {
    stopping ??= new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      const killer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      child.once('exit', () => {
        clearTimeout(killer);
        resolve();
      });
      child.kill('SIGTERM');
    });
    return stopping;
  };
  return { child, log: () => output, stop };
}

/**
 * initdb refuses to run as root, so as root the cluster belongs to the `postgres` user and
 * every server command runs through `runuser -u postgres`.
 */
async function startPostgres(): Promise<StartedService> {
  return startRestartablePostgres();
}

/** A throwaway PostgreSQL cluster in a temp dir on a free port, for tests that stop the server. */
export async function startRestartablePostgres(): Promise<RestartableService> {
  const bin = postgresBinDir();
  if (!bin) throw new Error('no PostgreSQL binaries (initdb, pg_ctl) found');
  const asRoot = process.getuid?.() === 0;
  const runuser = asRoot ? which('runuser', ['/usr/sbin', '/sbin']) : null;
  if (asRoot && !runuser) throw new Error('running as root and runuser is missing, so initdb cannot run');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'agent-sessions-pg-'));
  const data = path.join(dir, 'data');
  const logFile = path.join(dir, 'postgres.log');
  const asOwner = (tool: string, args: string[]) =>
    runuser ? run(runuser, ['-u', 'postgres', '--', path.join(bin, tool), ...args]) : run(path.join(bin, tool), args);
  if (asRoot) {
    const ids = run('id', ['-u', 'postgres']);
    const gids = run('id', ['-g', 'postgres']);
    if (!ids.ok) throw new Error('running as root and there is no postgres user to own the cluster');
    chownSync(dir, Number(ids.output), Number(gids.output));
  }
  const cleanup = () => rmSync(dir, { recursive: true, force: true });
  const init = asOwner('initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync', '--no-instructions']);
  if (!init.ok) {
    cleanup();
    throw new Error(`initdb failed: ${init.output}`);
  }
  const port = await freePort();
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200`;
  const start = asOwner('pg_ctl', ['-D', data, '-l', logFile, '-o', options, '-w', '-t', '30', 'start']);
  if (!start.ok) {
    cleanup();
    throw new Error(`pg_ctl start failed: ${start.output}`);
  }
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  let stopping: Promise<void> | null = null;
  return {
    url,
    halt: async () => {
      const stop = asOwner('pg_ctl', ['-D', data, '-m', 'fast', '-w', 'stop']);
      if (!stop.ok) throw new Error(`pg_ctl stop failed: ${stop.output}`);
    },
    resume: async () => {
      const again = asOwner('pg_ctl', ['-D', data, '-l', logFile, '-o', options, '-w', '-t', '30', 'start']);
      if (!again.ok) throw new Error(`pg_ctl start failed: ${again.output}`);
    },
    stop: () => {
      stopping ??= (async () => {
        asOwner('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']);
        cleanup();
      })();
      return stopping;
    },
  };
}

async function startRedis(): Promise<StartedService> {
  const binary = which('redis-server', ['/usr/bin', '/usr/local/bin']);
  if (!binary) throw new Error('no redis-server binary found');
  const port = await freePort();
  const server = spawnServer(binary, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']);
  const url = `redis://127.0.0.1:${port}`;
  try {
    await waitFor('redis', url, server.child, server.log);
  } catch (err) {
    await server.stop();
    throw err;
  }
  return { url, stop: server.stop };
}

async function startNats(): Promise<StartedService> {
  const binary = which('nats-server', ['/usr/sbin', '/usr/bin', '/usr/local/bin']);
  if (!binary) throw new Error('no nats-server binary found');
  const port = await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'agent-sessions-nats-'));
  const server = spawnServer(binary, ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', dir]);
  const url = `nats://127.0.0.1:${port}`;
  const stop = async () => {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitFor('nats', url, server.child, server.log);
  } catch (err) {
    await stop();
    throw err;
  }
  return { url, stop };
}

const STARTERS: Record<ServiceName, () => Promise<StartedService>> = {
  postgres: startPostgres,
  redis: startRedis,
  nats: startNats,
};

/** Starts a throwaway instance of a service on a free port, from the installed binaries. */
export function startService(name: ServiceName): Promise<StartedService> {
  return STARTERS[name]();
}

function message(err: unknown): string {
  if (err instanceof AggregateError) return err.errors.map(message).join('; ');
  return err instanceof Error ? err.message || err.name : String(err);
}

/**
 * Finds one service: env URL, then the default port, then a throwaway instance. Never throws;
 * an unavailable service is reported with the reason.
 */
export async function findService(
  name: ServiceName,
  env: Record<string, string | undefined>,
  options: { start: boolean },
): Promise<{ info: ServiceInfo; started: StartedService | null }> {
  const fromEnv = env[ENV_VARS[name]];
  if (fromEnv) {
    try {
      await probe(name, fromEnv);
      return { info: { name, available: true, url: fromEnv, source: 'env', reason: null }, started: null };
    } catch (err) {
      // An explicit URL is not second-guessed with a local fallback.
      const reason = `${ENV_VARS[name]} is set but unreachable: ${message(err)}`;
      return { info: { name, available: false, url: null, source: 'none', reason }, started: null };
    }
  }
  const fallback = DEFAULT_URLS[name];
  let defaultError: string;
  try {
    await probe(name, fallback);
    return { info: { name, available: true, url: fallback, source: 'default', reason: null }, started: null };
  } catch (err) {
    defaultError = `${ENV_VARS[name]} unset and nothing answers at ${fallback} (${message(err)})`;
  }
  if (!options.start) {
    return { info: { name, available: false, url: null, source: 'none', reason: `${defaultError}; TEST_START_SERVICES=0` }, started: null };
  }
  try {
    const started = await startService(name);
    return { info: { name, available: true, url: started.url, source: 'started', reason: null }, started };
  } catch (err) {
    return {
      info: { name, available: false, url: null, source: 'none', reason: `${defaultError}; could not start one: ${message(err)}` },
      started: null,
    };
  }
}
