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
    expect(a).toMatch(/^as_[0-9a-f]{20}$/);
    expect(names.nameFor('SELECT $1::int')).toBe(a);
    const b = names.nameFor('SELECT $1::text');
    expect(b).not.toBe(a);
    expect(names.nameFor('SELECT $1::bigint')).toBeUndefined();
    expect(names.nameFor('SELECT $1::int')).toBe(a);
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

  it('prepares nothing when turned off', async () => {
    db = new PgDatabase({ connectionString: fresh.url, max: 1, preparedStatements: false });
    expect(await preparedOn(db)).not.toContain('SELECT $1::int AS n');
  });
});
