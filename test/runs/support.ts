/**
 * The modes the run suites cover, over the shared test harness (test/setup): a fresh
 * PostgreSQL database per suite and a unique Redis key prefix. A mode whose services are
 * missing is skipped by name (or fails under REQUIRE_SERVICES).
 */
import { createSessions, type Sessions } from '../../src/internal.js';
import { freshDatabase, requireServices, serviceUrl, uniqueKeyPrefix, type ServiceName } from '../setup/harness.js';
import { OwnRedisCluster, requireRedisBinaries } from '../redis/redis-servers.js';

export { freshDatabase, serviceUrl, uniqueKeyPrefix, uniqueToken, type FreshDatabase } from '../setup/harness.js';

export type ModeName = 'embedded' | 'postgres' | 'postgres+redis' | 'postgres+redis-cluster';

export interface Mode {
  name: ModeName;
  services: readonly ServiceName[];
  /** Whether several instances can share this mode's storage (not in-memory PGlite). */
  shared: boolean;
  /** Binaries the mode starts itself, beyond the shared services. */
  binaries?: readonly ('redis-server' | 'redis-cli')[];
  /** Storage for one suite; `open` makes a new instance on it. */
  prepare(): Promise<{ open(env?: Record<string, string>): Promise<Sessions>; dispose(): Promise<void> }>;
}

export const MODES: readonly Mode[] = [
  {
    name: 'embedded',
    services: [],
    shared: false,
    async prepare() {
      return {
        open: (env = {}) => createSessions({ env: { DATA_DIR: ':memory:', RUN_SWEEP_INTERVAL_MS: '0', ...env } }),
        dispose: async () => undefined,
      };
    },
  },
  {
    name: 'postgres',
    services: ['postgres'],
    shared: true,
    async prepare() {
      const db = await freshDatabase();
      return {
        open: (env = {}) => createSessions({ env: { DATABASE_URL: db.url, RUN_SWEEP_INTERVAL_MS: '0', ...env } }),
        dispose: db.drop,
      };
    },
  },
  {
    name: 'postgres+redis',
    services: ['postgres', 'redis'],
    shared: true,
    async prepare() {
      const db = await freshDatabase();
      const base = { DATABASE_URL: db.url, REDIS_URL: serviceUrl('redis'), KEY_PREFIX: uniqueKeyPrefix(), RUN_SWEEP_INTERVAL_MS: '0' };
      return { open: (env = {}) => createSessions({ env: { ...base, ...env } }), dispose: db.drop };
    },
  },
  {
    // Signals over (sharded-by-slot) pub/sub and output over Streams on a cluster of three
    // masters this suite starts itself, so a session's keys and another's land on different nodes.
    name: 'postgres+redis-cluster',
    services: ['postgres'],
    binaries: ['redis-server', 'redis-cli'],
    shared: true,
    async prepare() {
      const db = await freshDatabase();
      let cluster: OwnRedisCluster;
      try {
        cluster = await OwnRedisCluster.start(3);
      } catch (err) {
        await db.drop();
        throw err;
      }
      const base = {
        DATABASE_URL: db.url,
        REDIS_URL: cluster.url,
        REDIS_CLUSTER: 'true',
        KEY_PREFIX: uniqueKeyPrefix(),
        RUN_SWEEP_INTERVAL_MS: '0',
      };
      return {
        open: (env = {}) => createSessions({ env: { ...base, ...env } }),
        dispose: async () => {
          await cluster.stop();
          await db.drop();
        },
      };
    },
  },
];

/** Whether a suite in `mode` can run here (skipped by name otherwise). */
export function modeReady(mode: Mode, suite: string): boolean {
  return requireServices(mode.services, suite) && requireRedisBinaries(mode.binaries ?? [], suite);
}

/** Collects a stream into an array (it ends after the terminal event). */
export async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of iterable) out.push(item);
  return out;
}

export function waitFor(condition: () => boolean | Promise<boolean>, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return (async () => {
    while (!(await condition())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  })();
}

/**
 * What Redis holds for a session just created, once it holds `version` (`read` gets the
 * session's key): a create does not wait for its snapshot's store (docs/distributed.md, rule 6).
 */
export async function createdSnapshot(read: () => Promise<string | null>, version: number): Promise<string> {
  let stored: string | null = null;
  await waitFor(async () => (stored = await read())?.startsWith(`${version}:`) === true, 10_000, 'the created snapshot in Redis');
  return stored as unknown as string;
}
