/**
 * The statements that take a list of keys as one JSON parameter look each key up by its
 * primary key, whatever the tables hold (migration 065). Read with jsonb_array_elements, which
 * the planner counts as 100 rows, the list made a scan of the whole table look cheaper than 100
 * probes up to some ten thousand rows, so these statements read all of `sessions` (or `runs`,
 * `outbox`) at every call: the output archive's group statement, once per commit, cost
 * PostgreSQL twice its CPU per event with 6,000 sessions in the table.
 *
 * Checked on the plan PostgreSQL keeps for a prepared statement (the generic plan), with tables
 * of 5,000 rows, where the statements before migration 065 were planned as scans.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PgDatabase } from '../../src/adapters/postgres/database.js';
import { migrate } from '../../src/adapters/postgres/migrator.js';
import { loadStatements } from '../../src/adapters/postgres/sql.js';
import { freshDatabase, requireServices, type FreshDatabase } from '../setup/harness.js';

const ready = requireServices(['postgres'], 'adapters/keyed-statement-plans');
const ROWS = 5_000;

/** The statements that look rows up by a JSON list of keys, and the tables they must not scan. */
const KEYED: Record<string, string[]> = {
  'run-output-append-group': ['sessions', 'runs'],
  'run-output-append': ['sessions', 'runs'],
  'session-increment-counters-many': ['sessions'],
  'session-get-many': ['sessions'],
  'session-purge-many': ['sessions'],
  'session-terminate-many': ['sessions'],
  'outbox-mark': ['outbox'],
  'run-heartbeat': ['sessions', 'runs'],
};

/**
 * Partial indexes that hold only live rows: walking one reads the running and queued runs, not
 * the table (the heartbeat's renewal, when the statistics say few runs are active).
 */
const PARTIAL = ['runs_active_lease'];

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  'Index Cond'?: string;
  'Recheck Cond'?: string;
  Plans?: PlanNode[];
}

function nodes(plan: PlanNode): PlanNode[] {
  return [plan, ...(plan.Plans ?? []).flatMap(nodes)];
}

describe.skipIf(!ready)('adapters/keyed-statement-plans', () => {
  let fresh: FreshDatabase;
  let client: pg.Client;

  beforeAll(async () => {
    fresh = await freshDatabase();
    const db = new PgDatabase({ connectionString: fresh.url, max: 1 });
    try {
      await migrate(db);
    } finally {
      await db.close();
    }
    client = new pg.Client({ connectionString: fresh.url });
    await client.connect();
    await client.query(`INSERT INTO sessions (tenant_id, id, status) SELECT 'plans', 'plan-' || g, 'idle' FROM generate_series(1, ${ROWS}) g`);
    await client.query(`INSERT INTO runs (id, tenant_id, session_id, status, owner, start_seq)
      SELECT gen_random_uuid(), 'plans', 'plan-' || g, 'completed', 'a', 0 FROM generate_series(1, ${ROWS}) g`);
    await client.query(`INSERT INTO outbox (tenant_id, type, session_id, payload)
      SELECT 'plans', 'session.created', 'plan-' || g, '{}' FROM generate_series(1, ${ROWS}) g`);
    await client.query('ANALYZE sessions, runs, outbox');
  });

  afterAll(async () => {
    await client?.end();
    await fresh?.drop();
  });

  /**
   * The relations the statement's generic plan reads whole: a sequential scan, or an index
   * scan with no key condition (an index walked end to end, as a sort by key might choose).
   */
  async function scanned(name: string): Promise<string[]> {
    const statement = Object.values(loadStatements()).find((s) => s.name === name);
    if (!statement) throw new Error(`no statement ${name}`);
    await client.query('BEGIN');
    try {
      await client.query('SET LOCAL plan_cache_mode = force_generic_plan');
      await client.query(`PREPARE keyed_plan AS ${statement.text}`);
      const nulls = statement.params.map(() => 'NULL').join(', ');
      const rows = await client.query<{ 'QUERY PLAN': Array<{ Plan: PlanNode }> }>(`EXPLAIN (FORMAT JSON) EXECUTE keyed_plan(${nulls})`);
      const plan = rows.rows[0]?.['QUERY PLAN'][0]?.Plan as PlanNode;
      const whole = (n: PlanNode) =>
        n['Node Type'] === 'Seq Scan' ||
        (/Index (Only )?Scan/.test(n['Node Type']) && !n['Index Cond'] && !PARTIAL.includes(n['Index Name'] ?? '')) ||
        (n['Node Type'] === 'Bitmap Heap Scan' && !n['Recheck Cond']);
      return nodes(plan)
        .filter((n) => n['Relation Name'] !== undefined && whole(n))
        .map((n) => n['Relation Name'] as string);
    } finally {
      await client.query('ROLLBACK');
      // A prepared statement outlives the transaction.
      await client.query('DEALLOCATE ALL');
    }
  }

  for (const [name, tables] of Object.entries(KEYED)) {
    it(`${name} reads ${tables.join(' and ')} by primary key, not by reading all ${ROWS.toLocaleString('en')} rows`, async () => {
      expect((await scanned(name)).filter((t) => tables.includes(t))).toEqual([]);
    });
  }

  it('the list function gives back every element of the list, in its order, and nothing for null', async () => {
    const { rows } = await client.query<{ e: unknown }>(`SELECT e FROM agent_sessions_each($1::jsonb) AS e`, [JSON.stringify(['a', 2, null, { k: [1] }])]);
    expect(rows.map((r) => r.e)).toEqual(['a', 2, null, { k: [1] }]);
    const none = await client.query(`SELECT e FROM agent_sessions_each(NULL) AS e`);
    expect(none.rows).toEqual([]);
  });
});
