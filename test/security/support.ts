/**
 * Shared setup for the security suites (over test/setup/harness.ts): a fresh PostgreSQL database per suite, app
 * instances over it (several share one database to act as several servers), keys, and a
 * snapshot of every table to prove a rejected request changed nothing.
 */
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import { createSessions, type Sessions, internals } from '../../src/internal.js';
import { buildApp } from '../../src/server/app.js';
import type { Config } from '../../src/internal.js';
import type { Scope } from '../../src/core/api-keys.js';

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

/** Row count and a hash of every row, per table: equal snapshots mean nothing changed. */
export async function snapshot(sessions: Sessions): Promise<Record<string, string>> {
  // A run started by an earlier request writes in the background until it ends.
  for (const deadline = Date.now() + 10_000; internals(sessions).runs.localRunCount > 0 && Date.now() < deadline; ) {
    await new Promise((r) => setTimeout(r, 5));
  }
  const tables = await internals(sessions).db.query<{ name: string }>(
    `SELECT quote_ident(table_name) AS name FROM information_schema.tables
     WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name`,
  );
  const out: Record<string, string> = {};
  for (const { name } of tables) {
    const rows = await internals(sessions).db.query<{ n: number; h: string }>(
      `SELECT count(*)::int AS n, md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) AS h FROM ${name} t`,
    );
    out[name] = `${rows[0]?.n}:${rows[0]?.h}`;
  }
  return out;
}
