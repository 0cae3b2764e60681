/**
 * pg and PGlite translate driver errors identically on every path: a value the database
 * refuses is a 400 (`validation_failed`) whether the statement ran alone or inside a
 * transaction, a unique violation and a statement of ours that is wrong keep their SQLSTATE
 * (callers handle the first; the second is a defect), and an error the transaction's own
 * function throws passes through untouched.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PgDatabase, PgliteDatabase, type SqlDatabase } from '../../src/adapters/postgres/database.js';
import { migrate } from '../../src/adapters/postgres/migrator.js';
import { freshDatabase, requireServices, type FreshDatabase } from '../setup/harness.js';

const ready = requireServices(['postgres'], 'adapters/database-errors');

const BAD_STATUS = `INSERT INTO sessions (id, tenant_id, status) VALUES (gen_random_uuid(), 't', 'bogus')`;
const BAD_CAST = `SELECT 'not a number'::int`;
const DUPLICATE = `INSERT INTO api_keys (id, tenant_id, prefix, hash, scopes) VALUES ('00000000-0000-4000-8000-000000000001', 't', 'p', 'h', '{}')`;
const WRONG_SQL = `SELECT * FROM no_such_table`;

async function failure(work: () => Promise<unknown>): Promise<{ name: string; code: unknown }> {
  try {
    await work();
  } catch (err) {
    return { name: (err as Error).name, code: (err as { code?: unknown }).code };
  }
  throw new Error('expected a failure');
}

/** What each statement does on both paths of one driver. */
async function outcomes(db: SqlDatabase) {
  const result: Record<string, { alone: unknown; inTransaction: unknown }> = {};
  await db.query(DUPLICATE);
  for (const [name, sql] of Object.entries({ BAD_STATUS, BAD_CAST, DUPLICATE, WRONG_SQL })) {
    result[name] = {
      alone: await failure(() => db.query(sql)),
      inTransaction: await failure(() => db.transaction((tx) => tx.query(sql))),
    };
  }
  return result;
}

describe.skipIf(!ready)('adapters/database-errors', () => {
  let pgFresh: FreshDatabase;
  let pgDb: PgDatabase;
  let lite: PgliteDatabase;

  beforeAll(async () => {
    pgFresh = await freshDatabase();
    pgDb = new PgDatabase({ connectionString: pgFresh.url });
    lite = new PgliteDatabase();
    for (const db of [pgDb, lite]) {
      await db.ready();
      await migrate(db);
    }
  });

  afterAll(async () => {
    await pgDb?.close();
    await lite?.close();
    await pgFresh?.drop();
  });

  it('maps the same violation to the same error alone and in a transaction, on pg and PGlite alike', async () => {
    const pg = await outcomes(pgDb);
    const pglite = await outcomes(lite);
    expect(pg).toEqual(pglite);
    for (const [name, o] of Object.entries(pg)) expect(o.alone, name).toEqual(o.inTransaction);
    expect(pg.BAD_STATUS?.alone).toEqual({ name: 'ValidationError', code: 'validation_failed' });
    expect(pg.BAD_CAST?.alone).toEqual({ name: 'ValidationError', code: 'validation_failed' });
    expect(pg.DUPLICATE?.alone).toMatchObject({ code: '23505' });
    expect(pg.WRONG_SQL?.alone).toMatchObject({ code: '42P01' });
  });

  it("passes the transaction function's own error through untouched and rolls back", async () => {
    for (const db of [pgDb, lite]) {
      const own = new Error('mine');
      await expect(
        db.transaction(async (tx) => {
          await tx.query(`INSERT INTO api_keys (id, tenant_id, prefix, hash, scopes) VALUES (gen_random_uuid(), 'rolled', 'rb', 'h', '{}')`);
          throw own;
        }),
      ).rejects.toBe(own);
      expect(await db.query(`SELECT 1 FROM api_keys WHERE tenant_id = 'rolled'`)).toEqual([]);
    }
  });
});
