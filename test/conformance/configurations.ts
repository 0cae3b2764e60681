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
import { createSessions, type Sessions } from '../../src/sessions.js';
import { freshDatabase, serviceUrl, uniqueKeyPrefix, type ServiceName } from '../setup/harness.js';

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
        open: (extra) => createSessions({ env: { DATA_DIR: ':memory:', ...extra } }),
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
        open: (extra) => createSessions({ env: { DATABASE_URL: db.url, ...extra } }),
        dispose: db.drop,
      };
    },
  },
  {
    name: 'postgres+redis',
    services: ['postgres', 'redis'],
    async prepare() {
      const db = await freshDatabase();
      const env = { DATABASE_URL: db.url, REDIS_URL: serviceUrl('redis'), KEY_PREFIX: uniqueKeyPrefix() };
      return { open: (extra) => createSessions({ env: { ...env, ...extra } }), dispose: db.drop };
    },
  },
];
