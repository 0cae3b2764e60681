/**
 * The PostgreSQL pool's idle timeout (DATABASE_POOL_IDLE_MS): a connection the pool has not
 * lent for that long is closed, and with 0 it stays open. Counted from PostgreSQL's side
 * (pg_stat_activity, by each pool's application name), not from the pool's own counters.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { PgDatabase } from '../../src/adapters/postgres/database.js';
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

  it('closes a connection left unused for the idle timeout, and keeps it open with 0', { timeout: 30_000 }, async () => {
    const token = uniqueToken();
    const shortName = `pool-idle-short-${token}`;
    const keptName = `pool-idle-kept-${token}`;
    const short = new PgDatabase({ connectionString: serviceUrl('postgres'), idleTimeoutMillis: 300, applicationName: shortName });
    const kept = new PgDatabase({ connectionString: serviceUrl('postgres'), idleTimeoutMillis: 0, applicationName: keptName });
    try {
      // Three queries at once in each pool: each grows to three connections.
      const sleep = 'SELECT pg_sleep(0.1)';
      await Promise.all([short, kept].flatMap((db) => [db.query(sleep), db.query(sleep), db.query(sleep)]));
      expect(await backends(shortName)).toBe(3);
      expect(await backends(keptName)).toBe(3);
      // The short pool closes all three once they idled 300 ms; the other, opened at the same time, keeps its three.
      await within(10_000, async () => (await backends(shortName)) === 0, 50);
      expect(await backends(keptName)).toBe(3);
    } finally {
      await Promise.all([short.close(), kept.close()]);
    }
  });

  it('takes the timeout from DATABASE_POOL_IDLE_MS, 60 s unless set, and refuses a negative one', () => {
    expect(loadConfig({}).databasePoolIdleMs).toBe(60_000);
    expect(loadConfig({ DATABASE_POOL_IDLE_MS: '0' }).databasePoolIdleMs).toBe(0);
    expect(() => loadConfig({ DATABASE_POOL_IDLE_MS: '-1' })).toThrow(/DATABASE_POOL_IDLE_MS/);
  });
});
