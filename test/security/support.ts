/**
 * Shared setup for the security suites (over test/setup/harness.ts): a fresh PostgreSQL database per suite, app
 * instances over it (several share one database to act as several servers), keys, and a
 * snapshot of every table to prove a rejected request changed nothing.
 */
import { connect, type AddressInfo } from 'node:net';
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import { createSessions, type Sessions, internals } from '../../src/internal.js';
import { buildApp } from '../../src/server/app.js';
import type { Config, CreateSessionsOptions } from '../../src/internal.js';
import type { Scope } from '../../src/core/api-keys.js';

import { freshDatabase, serviceUrl, uniqueKeyPrefix, type ServiceName } from '../setup/harness.js';

export { freshDatabase, requireServices, serviceUrl, uniqueKeyPrefix, uniqueToken } from '../setup/harness.js';
export type { FreshDatabase as TestDatabase } from '../setup/harness.js';

export interface Instance {
  sessions: Sessions;
  app: FastifyInstance;
  close(): Promise<void>;
}

/** One server over `databaseUrl`; no admin key from the environment unless given. */
export async function startInstance(databaseUrl: string, overrides: Partial<Config> = {}): Promise<Instance> {
  // Runs go on after their 202; an agent that ends at once keeps table snapshots quick to settle.
  const sessions = await createSessions({ env: {}, databaseUrl, agent: async () => undefined, runLeaseMs: 600, ...overrides });
  const app = await buildApp({ sessions, logger: false });
  await app.ready();
  return {
    sessions,
    app,
    close: async () => {
      await app.close();
      await sessions.close();
    },
  };
}

/** The two ways a server stores data, for suites that must hold in both. */
export interface StorageMode {
  name: string;
  services: readonly ServiceName[];
  /** Opens sessions over fresh storage (a new database, a new Redis key prefix). */
  open(options: CreateSessionsOptions): Promise<{ sessions: Sessions; dispose(): Promise<void> }>;
}

export const STORAGE_MODES: readonly StorageMode[] = [
  {
    name: 'embedded',
    services: [],
    async open(overrides) {
      const sessions = await createSessions({ env: {}, dataDir: ':memory:', ...overrides });
      return { sessions, dispose: () => sessions.close() };
    },
  },
  {
    name: 'postgres+redis',
    services: ['postgres', 'redis'],
    async open(overrides) {
      const db = await freshDatabase();
      try {
        const sessions = await createSessions({ env: {}, databaseUrl: db.url, redisUrl: serviceUrl('redis'), keyPrefix: uniqueKeyPrefix(), ...overrides });
        return {
          sessions,
          dispose: async () => {
            await sessions.close();
            await db.drop();
          },
        };
      } catch (err) {
        await db.drop();
        throw err;
      }
    },
  },
];

/** One server over `sessions`, listening on a free loopback port. */
export async function listen(sessions: Sessions): Promise<{ app: FastifyInstance; port: number; base: string }> {
  const app = await buildApp({ sessions, logger: false });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const port = (app.server.address() as AddressInfo).port;
  return { app, port, base: `http://127.0.0.1:${port}` };
}

export async function makeKey(sessions: Sessions, tenant: string, scopes: Scope[], root = false): Promise<string> {
  return (await internals(sessions).apiKeys.create({ tenant, scopes, name: `${tenant}-${scopes.join('+')}`, root })).key;
}

export function call(
  app: FastifyInstance,
  key: string | null,
  method: InjectOptions['method'],
  url: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<LightMyRequestResponse> {
  return app.inject({
    method,
    url,
    headers: { ...(key === null ? {} : { authorization: `Bearer ${key}` }), ...headers },
    ...(body === undefined ? {} : { payload: body as InjectOptions['payload'] }),
  });
}

/** The statement `snapshot` runs, per database: one round trip for every table. */
const snapshotStatements = new WeakMap<object, string>();

/** Row count and a hash of every row, per table: equal snapshots mean nothing changed. */
export async function snapshot(sessions: Sessions): Promise<Record<string, string>> {
  // A run started by an earlier request writes in the background until it ends.
  for (const deadline = Date.now() + 10_000; internals(sessions).runs.localRunCount > 0; ) {
    if (Date.now() > deadline) throw new Error(`snapshot: ${internals(sessions).runs.localRunCount} runs still going after 10 s`);
    await new Promise((r) => setTimeout(r, 5));
  }
  const db = internals(sessions).db;
  let statement = snapshotStatements.get(db);
  if (statement === undefined) {
    const tables = await db.query<{ name: string }>(
      `SELECT quote_ident(table_name) AS name FROM information_schema.tables
       WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name`,
    );
    statement = tables
      .map(
        ({ name }) =>
          `SELECT '${name}' AS name, count(*)::int AS n, md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) AS h FROM ${name} t`,
      )
      .join(' UNION ALL ');
    snapshotStatements.set(db, statement);
  }
  const rows = await db.query<{ name: string; n: number; h: string }>(statement);
  const out: Record<string, string> = {};
  for (const { name, n, h } of rows) out[name] = `${n}:${h}`;
  return out;
}

export interface RawAnswer {
  /** 0 when the server closed without answering. */
  status: number;
  headers: Record<string, string>;
  body: string;
  /** A socket error the client saw (EPIPE, ECONNRESET), if any. */
  error: string | null;
}

/**
 * Writes `bytes` to a fresh connection as they are (no HTTP client in between to correct
 * them) and reads until the server closes it or `timeoutMs` passes; parses the first answer.
 */
export async function rawRequest(port: number, bytes: string | Buffer, timeoutMs = 5_000): Promise<RawAnswer> {
  const { answers, error } = await rawExchange(port, bytes, 1, timeoutMs);
  return { ...(answers[0] ?? { status: 0, headers: {}, body: '' }), error };
}

/** Like `rawRequest`, for `count` answers on one connection (pipelined requests, a 100 Continue). */
export async function rawAnswers(port: number, bytes: string | Buffer, count = 2, timeoutMs = 5_000): Promise<Omit<RawAnswer, 'error'>[]> {
  return (await rawExchange(port, bytes, count, timeoutMs)).answers;
}

function rawExchange(
  port: number,
  bytes: string | Buffer,
  count: number,
  timeoutMs: number,
): Promise<{ answers: Omit<RawAnswer, 'error'>[]; error: string | null }> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let error: string | null = null;
    const timer = setTimeout(() => socket.destroy(), timeoutMs);
    socket.on('data', (d: Buffer) => {
      chunks.push(d);
      // Stop once enough answers are complete (the server may keep the connection).
      const parsed = parseAnswers(Buffer.concat(chunks).toString('latin1'));
      if (parsed.filter((a) => a.complete).length >= count) socket.destroy();
    });
    socket.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
    socket.on('close', () => {
      clearTimeout(timer);
      const answers = parseAnswers(Buffer.concat(chunks).toString('latin1')).map(({ status, headers, body }) => ({ status, headers, body }));
      resolve({ answers, error });
    });
    socket.write(bytes);
  });
}

interface ParsedAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
  complete: boolean;
}

function parseAnswers(text: string): ParsedAnswer[] {
  const out: ParsedAnswer[] = [];
  let rest = text;
  while (rest.length > 0) {
    const end = rest.indexOf('\r\n\r\n');
    if (end === -1) break;
    const [statusLine = '', ...lines] = rest.slice(0, end).split('\r\n');
    const headers: Record<string, string> = {};
    for (const line of lines) {
      const colon = line.indexOf(':');
      if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1] ?? 0);
    const after = rest.slice(end + 4);
    if (status >= 100 && status < 200) {
      out.push({ status, headers, body: '', complete: true });
      rest = after;
      continue;
    }
    const length = headers['content-length'] === undefined ? null : Number(headers['content-length']);
    if (length === null) {
      out.push({ status, headers, body: after, complete: false });
      break;
    }
    out.push({ status, headers, body: after.slice(0, length), complete: after.length >= length });
    rest = after.slice(length);
  }
  return out;
}
