/**
 * Named prepared statements on PostgreSQL: parameterized statements are prepared once per
 * connection, scripts never are, the set of names is bounded, and the switch turns it off.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { PgDatabase, StatementNames } from '../../src/adapters/postgres/database.js';
import { requireServices, useFreshDatabase } from '../setup/harness.js';

describe('unit/statement-names', () => {
  it('names a text the same way every time and stops naming past its bound', () => {
    const names = new StatementNames(2);
    const a = names.nameFor('SELECT $1::int');
    expect(a).toMatch(/^as0_[0-9a-f]{20}$/);
    expect(names.nameFor('SELECT $1::int')).toBe(a);
    const b = names.nameFor('SELECT $1::text');
    expect(b).not.toBe(a);
    expect(names.nameFor('SELECT $1::bigint')).toBeUndefined();
    expect(names.nameFor('SELECT $1::int')).toBe(a);
    names.reset();
    const renamed = names.nameFor('SELECT $1::int');
    expect(renamed).toMatch(/^as1_[0-9a-f]{20}$/);
    expect(renamed).not.toBe(a);
    // Several statements in flight fail on one schema change: the first resets, the others
    // (named in the older generation) do not reset again.
    names.resetAfter(renamed);
    const third = names.nameFor('SELECT $1::int');
    expect(third).toMatch(/^as2_/);
    names.resetAfter(renamed);
    expect(names.nameFor('SELECT $1::int')).toBe(third);
  });
});

const ready = requireServices(['postgres'], 'unit/prepared-statements');
describe.skipIf(!ready)('unit/prepared-statements', () => {
  const fresh = useFreshDatabase();
  let db: PgDatabase | null = null;
  afterEach(async () => {
    await db?.close();
    db = null;
  });

  /** The statements the connection running `fn` has prepared (one connection: a transaction). */
  async function preparedOn(database: PgDatabase): Promise<string[]> {
    return database.transaction(async (tx) => {
      await tx.query('SELECT $1::int AS n', [1]);
      await tx.query('SELECT $1::int AS n', [2]);
      await tx.exec('SELECT 1; SELECT 2');
      const rows = await tx.query<{ name: string; statement: string }>(
        'SELECT name, statement FROM pg_prepared_statements WHERE from_sql = false',
      );
      return rows.map((r) => r.statement);
    });
  }

  it('prepares a parameterized statement once per connection and never a script', async () => {
    db = new PgDatabase({ connectionString: fresh.url, max: 1 });
    const statements = await preparedOn(db);
    expect(statements.filter((s) => s === 'SELECT $1::int AS n')).toHaveLength(1);
    expect(statements.some((s) => s.includes('SELECT 2'))).toBe(false);
    expect((await db.query<{ n: number }>('SELECT $1::int AS n', [7]))[0]?.n).toBe(7);
  });

  it('survives a column added under a prepared SELECT * (a migration during a rolling upgrade)', async () => {
    db = new PgDatabase({ connectionString: fresh.url, max: 1 });
    await db.exec('DROP TABLE IF EXISTS widened; CREATE TABLE widened (id int PRIMARY KEY); INSERT INTO widened VALUES (1)');
    const read = () => db!.query<Record<string, unknown>>('SELECT * FROM widened WHERE id = $1', [1]);
    expect(await read()).toEqual([{ id: 1 }]);
    // Another instance migrates: the result type of the prepared statement changes.
    const other = new PgDatabase({ connectionString: fresh.url, max: 1 });
    try {
      await other.exec("ALTER TABLE widened ADD COLUMN note text NOT NULL DEFAULT 'new'");
    } finally {
      await other.close();
    }
    expect(await read()).toEqual([{ id: 1, note: 'new' }]);
    // Inside a transaction it cannot run again: a retryable 503, and the next one works.
    await db.exec('ALTER TABLE widened ADD COLUMN extra int');
    const inTx = () => db!.transaction((tx) => tx.query('SELECT * FROM widened WHERE id = $1', [1]));
    await expect(inTx()).rejects.toMatchObject({ code: 'unavailable' });
    expect(await inTx()).toEqual([{ id: 1, note: 'new', extra: null }]);
  });

  it('prepares nothing when turned off', async () => {
    db = new PgDatabase({ connectionString: fresh.url, max: 1, preparedStatements: false });
    expect(await preparedOn(db)).not.toContain('SELECT $1::int AS n');
  });
});
