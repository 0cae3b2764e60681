/**
 * Export and import at the adapter (in-memory PGlite, no services): the table list against the
 * migrated schema, a lossless round trip of values at the edges of their types, and the
 * refusals (a damaged, truncated, foreign or too new file; a target holding data), each of
 * which leaves the target exactly as it was, unmigrated included.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { PgliteDatabase, type SqlDatabase } from '../../src/adapters/postgres/database.js';
import { loadMigrations, migrate } from '../../src/adapters/postgres/migrator.js';
import {
  EXPORTED_TABLES,
  exportData,
  importData,
  NOT_EXPORTED_TABLES,
  type TransferHeader,
} from '../../src/adapters/postgres/data-transfer.js';

const opened: SqlDatabase[] = [];

async function database(migrated = true): Promise<SqlDatabase> {
  const db = new PgliteDatabase();
  opened.push(db);
  await db.ready();
  if (migrated) await migrate(db);
  return db;
}

afterAll(async () => {
  for (const db of opened.splice(0)) await db.close();
});

/** One populated store for every test (opening and migrating PGlite takes seconds). */
let populated: Promise<SqlDatabase> | null = null;
function source(): Promise<SqlDatabase> {
  populated ??= database().then(async (db) => {
    await populate(db);
    return db;
  });
  return populated;
}

async function exported(db: SqlDatabase, batchRows?: number): Promise<string> {
  let text = '';
  await exportData(
    db,
    async (chunk) => {
      text += chunk;
    },
    { packageVersion: 'test', batchRows },
  );
  return text;
}

async function* linesOf(text: string): AsyncGenerator<string> {
  for (const line of text.split('\n')) if (line !== '') yield line;
}

/** Every table's rows as PostgreSQL's own text form of the record, in order: what "identical" means. */
async function contents(db: SqlDatabase): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  await db.transaction(async (tx) => {
    await tx.exec("SET LOCAL TimeZone = 'UTC'");
    for (const t of EXPORTED_TABLES) {
      out[t] = (await tx.query<{ r: string }>(`SELECT t::text AS r FROM ${t} t ORDER BY 1`)).map((r) => r.r);
    }
  });
  return out;
}

async function ledger(db: SqlDatabase): Promise<boolean> {
  const [row] = await db.query<{ present: boolean }>("SELECT to_regclass('agent_sessions_migrations') IS NOT NULL AS present");
  return row?.present === true;
}

const S1 = '01900000-0000-7000-8000-000000000001';
const S2 = '01900000-0000-7000-8000-000000000002';
const R1 = '01900000-0000-7000-8000-0000000000a1';
const K1 = '01900000-0000-7000-8000-0000000000b1';

/** Values at the edges of what each column type can hold, written with SQL. */
async function populate(db: SqlDatabase): Promise<void> {
  await db.exec(`
    INSERT INTO sessions (id, tenant_id, user_id, status, title, mcp_client_ids, parent_session_id, metadata,
      total_turns, message_count, total_cost_usd, input_tokens, output_tokens, version, fence, item_seq, output_seq,
      ttl_seconds, created_at, updated_at, last_active_at, expires_at, ended_at, end_reason, queued_runs)
    VALUES
      ('${S1}', 'acme', 'u"1''x', 'terminated', E'tab\\there \\u2028 ü 😀', ARRAY['a,b', 'c"d', NULL, '{x}', 'é', ''],
       NULL, '{"big": 12345678901234567890, "one": 1.0, "tiny": 1e-30, "s": "\\u0001 \\" \\\\", "n": {"a": [1, null, true]}}',
       9007199254740993, 0, 12345678.0123456789, 9223372036854775807, 1, 9223372036854775807, 41, 2, 3,
       2147483647, '2026-01-02 03:04:05.123456+00', '2026-01-02 03:04:05.000001+00', '1999-12-31 23:59:59.999999+00',
       'infinity', '2026-01-02 03:04:06+05:30', 'client_ended', 0),
      ('${S2}', 'other', NULL, 'idle', NULL, '{}', '${S1}', '{}', 0, 0, 0, 0, 0, 1, 0, 0, 0, NULL,
       '2026-01-01 00:00:00+00', '2026-01-01 00:00:00+00', '2026-01-01 00:00:00+00', NULL, NULL, NULL, 0);
    INSERT INTO session_items (tenant_id, session_id, seq, id, client_id, role, type, content, created_at) VALUES
      ('acme', '${S1}', 1, '01900000-0000-7000-8000-0000000000c1', NULL, 'user', 'message', '"just a string"', '2026-01-02 03:04:05.5+00'),
      ('acme', '${S1}', 2, '01900000-0000-7000-8000-0000000000c2', E'msg "1''\\\\x', 'assistant', 'message', '42', '2026-01-02 03:04:05.6+00'),
      ('acme', '${S1}', 3, '01900000-0000-7000-8000-0000000000c3', 'call_1', NULL, 'function_call', 'null', '2026-01-02 03:04:05.7+00');
    INSERT INTO runs (id, session_id, tenant_id, status, input, error, end_reason, start_seq, end_seq, input_seq, created_at) VALUES
      ('${R1}', '${S1}', 'acme', 'completed', 'null', NULL, 'completed', 1, 3, 1, '2026-01-02 03:04:05.7+00'),
      ('01900000-0000-7000-8000-0000000000a2', '${S1}', 'acme', 'failed', NULL, E'boom\\nline', 'runner_error', NULL, NULL, 0, '2026-01-02 03:04:05.8+00');
    INSERT INTO run_inputs (run_id, seq, data) VALUES ('${R1}', 1, '{"text": "more"}');
    INSERT INTO run_output (tenant_id, session_id, seq, run_id, type, data) VALUES
      ('acme', '${S1}', 1, '${R1}', 'status', '{"status": "running"}'), ('acme', '${S1}', 3, '${R1}', 'done', '{}');
    INSERT INTO outbox (tenant_id, type, session_id, payload, published_at) VALUES
      ('acme', 'session.created', '${S1}', '{"id": 1}', '2026-01-02 03:04:05+00'),
      ('acme', 'session.updated', '${S1}', '{"id": 2}', NULL),
      ('acme', 'session.updated', NULL, '[]', NULL);
    DELETE FROM outbox WHERE payload = '[]';
    INSERT INTO api_keys (id, tenant_id, name, prefix, hash, scopes, revoked_at, root) VALUES
      ('${K1}', 'acme', NULL, 'abcdefghijkl', 'deadbeef', ARRAY['read', 'admin'], '2026-01-03 00:00:00.25+00', true);
  `);
}

// PGlite opens and migrates in a second or two, much longer on a busy machine.
describe('data transfer', { timeout: 180_000 }, () => {
  it('exports every table of the schema except the listed ones, parents before children', async () => {
    const db = await source();
    const tables = await db.query<{ name: string; refs: string[] }>(`
      SELECT c.relname AS name, coalesce(array_agg(r.relname::text) FILTER (WHERE r.relname IS NOT NULL), '{}') AS refs
      FROM pg_class c
      LEFT JOIN pg_constraint k ON k.conrelid = c.oid AND k.contype = 'f'
      LEFT JOIN pg_class r ON r.oid = k.confrelid
      WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p')
      GROUP BY c.relname`);
    const exportedList: readonly string[] = EXPORTED_TABLES;
    // A new table must be added to one of the two lists: exported, or not with a reason.
    expect(tables.map((t) => t.name).sort()).toEqual([...exportedList, ...Object.keys(NOT_EXPORTED_TABLES)].sort());
    for (const t of tables) {
      if (!exportedList.includes(t.name)) continue;
      for (const ref of t.refs) {
        expect(exportedList, `${t.name} references ${ref}`).toContain(ref);
        expect(exportedList.indexOf(ref), `${t.name} references ${ref}, which must come first`).toBeLessThan(exportedList.indexOf(t.name));
      }
    }
  });

  it('round-trips every value exactly, sequences included', async () => {
    const text = await exported(await source(), 2);
    const lines = text.trimEnd().split('\n');
    const header = JSON.parse(lines[0] ?? '') as TransferHeader;
    expect(header).toMatchObject({ format: 'agent-sessions-export', formatVersion: 1, source: 'embedded', packageVersion: 'test' });
    expect(Object.keys(header.tables)).toEqual(EXPORTED_TABLES);
    // bigint and numeric travel as strings, timestamps with their microseconds.
    expect(lines[1]).toContain('"total_turns":"9007199254740993"');
    expect(lines[1]).toContain('"total_cost_usd":"12345678.0123456789"');
    expect(lines[1]).toContain('"created_at":"2026-01-02T03:04:05.123456+00:00"');
    expect(text).toContain('"big": 12345678901234567890');
    expect(text).toContain('"null":["input"]');
    expect(JSON.parse(lines.at(-1) ?? '')).toEqual({
      end: 'agent-sessions-export',
      rows: { sessions: 2, session_items: 3, runs: 2, run_inputs: 1, run_output: 2, outbox: 2, api_keys: 1 },
      sequences: { 'outbox.id': '3' },
    });

    const target = await database(false);
    const summary = await importData(target, linesOf(text), { batchRows: 2 });
    expect(summary.rows.sessions).toBe(2);
    expect(await contents(target)).toEqual(await contents(await source()));
    // And back again: the same bytes, but for the header's time.
    const again = await exported(target);
    expect(again.split('\n').slice(1)).toEqual(text.split('\n').slice(1));
    // The sequence is past the highest id ever drawn (3, though row 3 was deleted), not just the highest row.
    const [next] = await target.query<{ id: string }>(
      "INSERT INTO outbox (tenant_id, type, payload) VALUES ('acme', 'x', '{}') RETURNING id::text AS id",
    );
    expect(next?.id).toBe('4');
  });

  it('imports a file of an older schema by migrating the target to it first, then on', async () => {
    const migrations = loadMigrations();
    const older = migrations.filter((m) => m.version < 40);
    const old = await database(false);
    await migrate(old, older);
    await old.exec(`INSERT INTO api_keys (id, tenant_id, prefix, hash, scopes) VALUES ('${K1}', 'acme', 'p', 'h', '{admin}')`);
    const text = await exported(old);
    const header = JSON.parse(text.slice(0, text.indexOf('\n'))) as TransferHeader;
    expect(header.schemaVersion).toBe(older.at(-1)?.version);
    expect(header.tables.api_keys).not.toContain('root');

    const target = await database(false);
    await importData(target, linesOf(text));
    const [key] = await target.query<{ root: boolean }>('SELECT root FROM api_keys');
    // 040 added the column with its default: the row went through the migration like stored data would.
    expect(key?.root).toBe(false);
    const [ledger] = await target.query<{ version: number }>('SELECT max(version)::int AS version FROM agent_sessions_migrations');
    expect(ledger?.version).toBe(migrations.at(-1)?.version);
    // A target already past the file's version is refused (before its rows are even looked at):
    // the file's rows could not take the migrations between.
    await expect(importData(await source(), linesOf(text))).rejects.toMatchObject({ code: 'import_refused', message: expect.stringMatching(/newer than the file's/) });
  });

  it('refuses a damaged, truncated, foreign or too new file, and a target with data, changing nothing', async () => {
    const text = await exported(await source());
    const lines = text.trimEnd().split('\n');
    const header = JSON.parse(lines[0] ?? '') as TransferHeader;
    const withHeader = (h: object) => [JSON.stringify(h), ...lines.slice(1)].join('\n');
    const cases: Array<[string, string, RegExp]> = [
      ['no trailer', lines.slice(0, -1).join('\n'), /truncated/],
      ['cut inside a line', text.slice(0, Math.floor(text.length * 0.6)), /damaged or truncated|truncated/],
      ['a lost row', [...lines.slice(0, 3), ...lines.slice(4)].join('\n'), /trailer counts/],
      ['a garbled line', [...lines.slice(0, 3), '{"table":"sessions"', ...lines.slice(4)].join('\n'), /line 4/],
      ['a wrong value', text.replace('"version":"1"', '"version":"one"'), /refused rows of sessions/],
      ['content after the trailer', `${text}{"table":"sessions","row":{}}\n`, /after the trailer/],
      ['a foreign file', '{"hello":"world"}\n', /not an agent-sessions-export file/],
      ['an empty file', '', /empty/],
      ['a newer schema', withHeader({ ...header, schemaVersion: 9999 }), /newer than this build/],
      ['a newer format', withHeader({ ...header, formatVersion: 2 }), /format version 2/],
      // What run_output's foreign key refused until migration 063, the import checks.
      [
        'output of a session the file does not hold',
        lines.map((l) => (l.startsWith('{"table":"run_output"') ? l.replaceAll(S1, S2) : l)).join('\n'),
        new RegExp(`run_output holds event \\d+ of session ${S2} \\(tenant acme\\)`),
      ],
    ];
    const target = await database(false);
    for (const [what, file, message] of cases) {
      await expect(importData(target, linesOf(file)), what).rejects.toMatchObject({ code: 'transfer_invalid', message: expect.stringMatching(message) });
      // Not even migrated: the transaction that would have migrated it rolled back.
      expect(await ledger(target), what).toBe(false);
    }

    // An empty store imports, leaving the sequence fresh; the refusals left nothing behind.
    const occupied = await database();
    await importData(target, linesOf(await exported(occupied)));
    const [next] = await target.query<{ id: string }>(
      "INSERT INTO outbox (tenant_id, type, payload) VALUES ('acme', 'x', '{}') RETURNING id::text AS id",
    );
    expect(next?.id).toBe('1');

    await occupied.query(`INSERT INTO api_keys (id, tenant_id, prefix, hash, scopes) VALUES ('${K1}', 't', 'p', 'h', '{read}')`);
    const before = await contents(occupied);
    await expect(importData(occupied, linesOf(text))).rejects.toMatchObject({
      code: 'import_refused',
      message: expect.stringMatching(/already holds data \(api_keys\)/),
    });
    expect(await contents(occupied)).toEqual(before);
  });
});
