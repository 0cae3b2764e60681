/**
 * The PostgreSQL pool's idle timeout (DATABASE_POOL_IDLE_MS): a connection the pool has not
 * lent for that long is closed. Counted from PostgreSQL's side (pg_stat_activity, by the
 * pool's application name), not from the pool's own counters.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { openDatabase } from '../../src/app/assemble.js';
import { loadConfig } from '../../src/app/config.js';
import { requireServices, serviceUrl, uniqueToken, within } from '../setup/harness.js';

const suite = 'adapters/database-pool';
const ready = requireServices(['postgres'], suite);

describe.skipIf(!ready)(suite, () => {
  let observer: pg.Client;

  beforeAll(async () => {
    observer = new pg.Client({ connectionString: serviceUrl('postgres') });
    await observer.connect();
  });

  afterAll(async () => {
    await observer?.end();
  });

  const backends = async (applicationName: string): Promise<number> => {
    const { rows } = await observer.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1', [applicationName]);
    return rows[0]?.n ?? 0;
  };

  it('closes the connections left unused for DATABASE_POOL_IDLE_MS, not at node-postgres\' 10 s or our 60 s default', { timeout: 30_000 }, async () => {
    const instanceId = `pool-idle-${uniqueToken()}`;
    const config = { ...loadConfig({ DATABASE_URL: serviceUrl('postgres'), DATABASE_POOL_IDLE_MS: '1500', INSTANCE_ID: instanceId }) };
    const db = openDatabase(config);
    // openDatabase names the connections after the instance.
    const name = `agent-sessions ${instanceId}`;
    try {
      // Three queries at once: the pool grows to three connections.
      const sleep = 'SELECT pg_sleep(0.1)';
      await Promise.all([db.query(sleep), db.query(sleep), db.query(sleep)]);
      expect(await backends(name)).toBe(3);
      // Unused for 1.5 s, all three close (0 would keep them: node-postgres' own rule).
      await within(10_000, async () => (await backends(name)) === 0, 50);
    } finally {
      await db.close();
    }
  });

  it('takes the timeout from DATABASE_POOL_IDLE_MS, 60 s unless set, and refuses a negative one', () => {
    expect(loadConfig({}).databasePoolIdleMs).toBe(60_000);
    expect(loadConfig({ DATABASE_POOL_IDLE_MS: '0' }).databasePoolIdleMs).toBe(0);
    expect(() => loadConfig({ DATABASE_POOL_IDLE_MS: '-1' })).toThrow(/DATABASE_POOL_IDLE_MS/);
    // Node's timers take at most 2^31 - 1 ms; a longer one would fire at once.
    expect(() => loadConfig({ DATABASE_POOL_IDLE_MS: '2147483648' })).toThrow(/DATABASE_POOL_IDLE_MS/);
  });
});
