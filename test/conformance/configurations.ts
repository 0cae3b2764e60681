/**
 * The configurations the conformance suites run against. Each entry names the services it
 * needs (without them its suites are skipped by name, or fail under REQUIRE_SERVICES) and
 * knows how to give one suite isolated storage. Adding a mode is adding an entry here, e.g.
 *
 *   {
 *     name: 'postgres+redis',
 *     services: ['postgres', 'redis'],
 *     async prepare() {
 *       const db = await freshDatabase();
 *       const env = { DATABASE_URL: db.url, REDIS_URL: serviceUrl('redis'), KEY_PREFIX: uniqueKeyPrefix() };
 *       return { open: (extra) => createSessions({ env: { ...env, ...extra } }), dispose: db.drop };
 *     },
 *   },
 */
import { createSessions, type Sessions } from '../../src/internal.js';
import { freshDatabase, serviceUrl, uniqueKeyPrefix, type ServiceName } from '../setup/harness.js';

/**
 * The suites built on these configurations count outbox rows and compare versions before and
 * after a call, so nothing may write in the background: a sweep pass (the first one comes
 * 22-38 s after start, which a slow run reaches) would warn and expire the short-lived
 * sessions of the expiry tests in between. The sweeps have their own suite
 * (test/events/sweeper.test.ts).
 */
const NO_SWEEPS = { SWEEP_INTERVAL_MS: '0' } as const;

/** Isolated storage for one suite. */
export interface Backend {
  /**
   * Opens a `Sessions` on this suite's storage; `env` adds configuration variables. Every
   * call opens a new instance, which the caller closes (in-memory PGlite: its own database).
   */
  open(env?: Record<string, string>): Promise<Sessions>;
  /** Removes the suite's storage, after every opened instance is closed. */
  dispose(): Promise<void>;
}

export interface Configuration {
  /** Short name; suites are called `<suite>/<name>`. */
  name: string;
  services: readonly ServiceName[];
  prepare(): Promise<Backend>;
}

export const CONFIGURATIONS: readonly Configuration[] = [
  {
    name: 'embedded',
    services: [],
    async prepare() {
      return {
        open: (extra) => createSessions({ env: { DATA_DIR: ':memory:', ...NO_SWEEPS, ...extra } }),
        dispose: async () => undefined,
      };
    },
  },
  {
    name: 'postgres',
    services: ['postgres'],
    async prepare() {
      const db = await freshDatabase();
      return {
        open: (extra) => createSessions({ env: { DATABASE_URL: db.url, ...NO_SWEEPS, ...extra } }),
        dispose: db.drop,
      };
    },
  },
  {
    name: 'postgres+redis',
    services: ['postgres', 'redis'],
    async prepare() {
      const db = await freshDatabase();
      const env = { DATABASE_URL: db.url, REDIS_URL: serviceUrl('redis'), KEY_PREFIX: uniqueKeyPrefix(), ...NO_SWEEPS };
      return { open: (extra) => createSessions({ env: { ...env, ...extra } }), dispose: db.drop };
    },
  },
];
