/**
 * Export and import of a store's data (SPEC §18): every row of every data table as one
 * self-describing NDJSON stream, so an embedded directory moves to PostgreSQL and back, and a
 * file is a backup.
 *
 *   {"format":"agent-sessions-export","formatVersion":1,"schemaVersion":51,...,"tables":{"sessions":["id",...],...}}
 *   {"table":"sessions","row":{"id":"0190…","total_turns":"3",...}}
 *   ...
 *   {"end":"agent-sessions-export","rows":{"sessions":12,...},"sequences":{"outbox.id":"57"}}
 *
 * Rows are written by PostgreSQL itself (row_to_json), tables in foreign-key order, each in
 * primary-key order, all from one read-only snapshot. A value keeps its JSON form where every
 * JSON reader reads it exactly (jsonb as is, text, uuid, boolean, int4, timestamps with their
 * microseconds, arrays of those); any other type (bigint, numeric, bytea, ...) is written as
 * PostgreSQL's own text form, a JSON string, so a JavaScript reader cannot round it. A JSON
 * column holding SQL NULL is named in the line's "null" list (a bare null there is JSON null).
 * The import never parses values in JavaScript either: the lines go to PostgreSQL as text, and
 * jsonb_populate_record turns them back into the columns' types with each type's input.
 *
 * An import runs in one transaction: migrate the target to the file's schema version, refuse a
 * target that holds data, insert in batches, move the sequences past the imported ids, forget
 * the target's Redis bookkeeping, migrate to this build's version. A file that is damaged or
 * truncated (no trailer, or counts that disagree) rolls all of it back.
 *
 * The per-table statements are the one place SQL is assembled at run time: they must follow
 * whatever the migrations create, so they are built from the catalog (sql/transfer-*.sql) and
 * the table list below, with quoted identifiers and no values. Imported outbox rows are copies
 * of events already written, ids included, not new events: they do not go through
 * OUTBOX_WRITER (sql.ts).
 */
import { AgentSessionsError, ValidationError } from '../../core/errors.js';
import type { SqlDatabase, SqlExecutor } from './database.js';
import { loadMigrations, lockedSchemaVersion, migrateWithin, type Migration } from './migrator.js';
import { run, statements } from './sql.js';

const SQL = statements(
  'transferSnapshot',
  'transferLedgerPresent',
  'migrationLedgerVersions',
  'transferColumns',
  'transferSequences',
  'transferSequenceSet',
  'transferForgetCache',
  'transferOrphanOutput',
);

export const TRANSFER_FORMAT = 'agent-sessions-export';
export const TRANSFER_FORMAT_VERSION = 1;

/**
 * The data tables, parents before children (an import inserts in this order). A test checks
 * this list against the migrated schema: every table is here or in NOT_EXPORTED_TABLES, and
 * every foreign key points to an earlier table.
 */
export const EXPORTED_TABLES = ['sessions', 'session_items', 'runs', 'run_inputs', 'run_output', 'outbox', 'api_keys'] as const;

/** The tables that are not data, and why they are not carried. */
export const NOT_EXPORTED_TABLES: Readonly<Record<string, string>> = Object.freeze({
  agent_sessions_migrations: 'the header carries the schema version; the target keeps its own ledger',
  session_locks: 'withSessionLock leases, which lapse within seconds; the fencing tokens live on sessions.fence, which is carried',
  cache_repairs: "repairs of the source's Redis cache; the import clears the target's cache instead",
  cache_redis_servers: "the Redis servers the source trusted; the import forgets the target's, so its cache is cleared",
  session_lock_epochs:
    "the lock epochs of the source's Redis keyspaces; the fences on sessions are carried, and a target's lease token below one moves the target's epoch above it",
  pruned_events: "how far the source's outbox retention pruned; the target reports gaps of its own pruning",
  idempotency_keys: 'stored Idempotency-Key answers, kept 24 h for retries in flight; a move stops the service, and a retry after it executes again',
});

export type ExportedTable = (typeof EXPORTED_TABLES)[number];

/** The file is not a complete export this build can read (damaged, truncated, foreign, too new). */
export class TransferFormatError extends AgentSessionsError {
  override name = 'TransferFormatError';
  constructor(message: string, line?: number) {
    super('transfer_invalid', line === undefined ? message : `line ${line}: ${message}`, { details: { line } });
  }
}

/** The target cannot take the import (it holds data, or its schema is newer than the file's). */
export class ImportRefusedError extends AgentSessionsError {
  override name = 'ImportRefusedError';
  constructor(message: string) {
    super('import_refused', message);
  }
}

export interface TransferHeader {
  format: typeof TRANSFER_FORMAT;
  formatVersion: number;
  /** The newest migration applied to the source. */
  schemaVersion: number;
  packageVersion: string;
  exportedAt: string;
  source: 'embedded' | 'postgres';
  /** Each exported table's columns, in the order of the rows' keys; tables in import order. */
  tables: Record<string, string[]>;
}

export interface TransferTrailer {
  end: typeof TRANSFER_FORMAT;
  rows: Record<string, number>;
  /** `table.column` → the sequence's last value (text), null when it was never used. */
  sequences: Record<string, string | null>;
}

export interface TransferSummary {
  schemaVersion: number;
  rows: Record<string, number>;
}

interface Column {
  name: string;
  type: string;
  keyPosition: number | null;
}

/**
 * Types whose JSON form (row_to_json) every JSON reader reads exactly; other types are written
 * as their text form. Not int8 or numeric: JavaScript reads those as doubles.
 */
const EXACT_JSON_TYPES = new Set([
  'json',
  'jsonb',
  'boolean',
  'smallint',
  'integer',
  'text',
  'character varying',
  'character',
  'uuid',
  'timestamp with time zone',
  'timestamp without time zone',
  'date',
]);

function exactInJson(type: string): boolean {
  if (!type.endsWith('[]')) return EXACT_JSON_TYPES.has(type);
  const element = type.slice(0, -2);
  return EXACT_JSON_TYPES.has(element) && element !== 'json' && element !== 'jsonb';
}

const ident = (name: string) => `"${name.replace(/"/g, '""')}"`;

async function columnsOf(tx: SqlExecutor, tables: readonly string[]): Promise<Map<string, Column[]>> {
  const rows = await run<{ table_name: string; column_name: string; type: string; key_position: number | null }>(tx, SQL.transferColumns, {
    tables,
  });
  const out = new Map<string, Column[]>();
  for (const r of rows) {
    const list = out.get(r.table_name) ?? [];
    list.push({ name: r.column_name, type: r.type, keyPosition: r.key_position === null ? null : Number(r.key_position) });
    out.set(r.table_name, list);
  }
  return out;
}

interface OwnedSequence {
  table: string;
  column: string;
  sequence: string;
  lastValue: string | null;
}

async function sequencesOf(tx: SqlExecutor, tables: readonly string[]): Promise<OwnedSequence[]> {
  const rows = await run<{ table_name: string; column_name: string; sequence_name: string; last_value: string | null }>(
    tx,
    SQL.transferSequences,
    { tables },
  );
  return rows.map((r) => ({ table: r.table_name, column: r.column_name, sequence: r.sequence_name, lastValue: r.last_value }));
}

/** The SELECT that writes one table's rows as JSON lines, in primary-key order. */
function exportQuery(table: string, columns: readonly Column[]): string {
  const key = columns
    .filter((c) => c.keyPosition !== null)
    .sort((a, b) => (a.keyPosition ?? 0) - (b.keyPosition ?? 0))
    .map((c) => `t.${ident(c.name)}`);
  if (key.length === 0) throw new Error(`table ${table} has no primary key; export needs one for a stable order`);
  const fields = columns.map((c) => (exactInJson(c.type) ? `t.${ident(c.name)}` : `t.${ident(c.name)}::text`) + ` AS ${ident(c.name)}`);
  const nulls = columns.filter(isJson).map((c) => `CASE WHEN t.${ident(c.name)} IS NULL THEN ${literal(c.name)} END`);
  return (
    `SELECT row_to_json(r)::text AS row, array_remove(ARRAY[${nulls.join(', ')}]::text[], NULL) AS nulls ` +
    `FROM ${ident(table)} t CROSS JOIN LATERAL (SELECT ${fields.join(', ')}) r ORDER BY ${key.join(', ')}`
  );
}

const isJson = (c: Column) => c.type === 'json' || c.type === 'jsonb';

/** A name as a string literal: a table of EXPORTED_TABLES, or a column the catalog has (a file's are checked first). */
const literal = (name: string) => `'${name.replace(/'/g, "''")}'`;

/**
 * One row's line. A JSON column holding SQL NULL is listed under "null": the row alone could
 * not tell it from a JSON null (runs.input holds JSON null when a run has no input).
 */
function rowLine(table: string, row: string, nulls: readonly string[]): string {
  return `{"table":${JSON.stringify(table)},"row":${row}${nulls.length > 0 ? `,"null":${JSON.stringify(nulls)}` : ''}}\n`;
}

export interface ExportOptions {
  packageVersion: string;
  /** Rows fetched (and written) at a time (default 1,000). */
  batchRows?: number;
  /** The newest schema this build knows (default: the last migration). */
  migrations?: Migration[];
}

/**
 * Writes every row of the store to `write`, one consistent snapshot. `write` is awaited, so a
 * slow reader slows the export instead of filling memory. The snapshot is one transaction: on
 * PGlite (one connection) other work of the same process waits until it is done.
 */
export async function exportData(
  db: SqlDatabase,
  write: (chunk: string) => Promise<void>,
  options: ExportOptions,
): Promise<TransferSummary> {
  const batchRows = options.batchRows ?? 1_000;
  const latest = (options.migrations ?? loadMigrations()).at(-1)?.version ?? 0;
  return db.transaction(
    async (tx) => {
      await tx.exec(SQL.transferSnapshot.text);
      const [ledger] = await run<{ present: boolean }>(tx, SQL.transferLedgerPresent);
      if (!ledger?.present) throw new ValidationError('the store holds no agent-sessions schema (it was never migrated): nothing to export');
      const versions = await run<{ version: number }>(tx, SQL.migrationLedgerVersions);
      const schemaVersion = Math.max(0, ...versions.map((v) => Number(v.version)));
      if (schemaVersion > latest) {
        throw new TransferFormatError(
          `the store's schema is at version ${schemaVersion} but this build knows only up to ${latest}; export with the newer agent-sessions`,
        );
      }
      const catalog = await columnsOf(tx, EXPORTED_TABLES);
      // A store at an older schema may lack a table added since; it has no rows of it.
      const tables = EXPORTED_TABLES.filter((t) => catalog.has(t));
      const header: TransferHeader = {
        format: TRANSFER_FORMAT,
        formatVersion: TRANSFER_FORMAT_VERSION,
        schemaVersion,
        packageVersion: options.packageVersion,
        exportedAt: new Date().toISOString(),
        source: db.kind === 'pglite' ? 'embedded' : 'postgres',
        tables: Object.fromEntries(tables.map((t) => [t, (catalog.get(t) ?? []).map((c) => c.name)])),
      };
      await write(`${JSON.stringify(header)}\n`);
      const rows: Record<string, number> = {};
      for (const table of tables) {
        rows[table] = 0;
        await tx.query(`DECLARE transfer_rows NO SCROLL CURSOR FOR ${exportQuery(table, catalog.get(table) ?? [])}`);
        for (;;) {
          const batch = await tx.query<{ row: string; nulls: string[] }>(`FETCH FORWARD ${batchRows} FROM transfer_rows`);
          if (batch.length === 0) break;
          await write(batch.map((r) => rowLine(table, r.row, r.nulls)).join(''));
          rows[table] += batch.length;
        }
        await tx.query('CLOSE transfer_rows');
      }
      // Read after the rows: a value at least as high as every id in the snapshot.
      const sequences = Object.fromEntries((await sequencesOf(tx, tables)).map((s) => [`${s.table}.${s.column}`, s.lastValue]));
      const trailer: TransferTrailer = { end: TRANSFER_FORMAT, rows, sequences };
      await write(`${JSON.stringify(trailer)}\n`);
      return { schemaVersion, rows };
    },
    { retryConflicts: false },
  );
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function parseLine(text: string, line: number): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new TransferFormatError('not JSON: the file is damaged or truncated', line);
  }
  if (!isObject(value)) throw new TransferFormatError('not a JSON object: the file is damaged', line);
  return value;
}

/** Checks the first line; throws when it is not a header this build can import. */
export function parseHeader(text: string | undefined, latest: number): TransferHeader {
  if (text === undefined) throw new TransferFormatError('the input is empty: nothing to import');
  const h = parseLine(text, 1);
  if (h.format !== TRANSFER_FORMAT) throw new TransferFormatError(`not an ${TRANSFER_FORMAT} file`, 1);
  if (h.formatVersion !== TRANSFER_FORMAT_VERSION) {
    throw new TransferFormatError(`format version ${String(h.formatVersion)} is not one this build reads (${TRANSFER_FORMAT_VERSION})`, 1);
  }
  if (!Number.isSafeInteger(h.schemaVersion) || (h.schemaVersion as number) < 1) throw new TransferFormatError('no schema version', 1);
  if ((h.schemaVersion as number) > latest) {
    throw new TransferFormatError(
      `the file's schema version ${String(h.schemaVersion)} is newer than this build's (${latest}); import it with the newer agent-sessions`,
      1,
    );
  }
  if (!isObject(h.tables)) throw new TransferFormatError('no table list', 1);
  let previous = -1;
  for (const [table, columns] of Object.entries(h.tables)) {
    const at = (EXPORTED_TABLES as readonly string[]).indexOf(table);
    if (at < 0) throw new TransferFormatError(`unknown table ${table}`, 1);
    if (at < previous) throw new TransferFormatError(`table ${table} is out of order`, 1);
    previous = at;
    if (!Array.isArray(columns) || columns.length === 0 || !columns.every((c) => typeof c === 'string')) {
      throw new TransferFormatError(`no column list for ${table}`, 1);
    }
  }
  return h as unknown as TransferHeader;
}

export interface ImportOptions {
  /** Lines per INSERT (default 500). */
  batchRows?: number;
  /** Bytes of lines per INSERT (default 4 MiB). */
  batchBytes?: number;
  migrations?: Migration[];
}

/**
 * Imports an export into `db`: all of it in one transaction, or nothing. Refuses a target
 * whose data tables hold any row, a file whose schema is newer than this build's, and a
 * target whose schema is newer than the file's.
 */
export async function importData(db: SqlDatabase, lines: AsyncIterable<string>, options: ImportOptions = {}): Promise<TransferSummary> {
  const migrations = options.migrations ?? loadMigrations();
  const latest = migrations.at(-1)?.version ?? 0;
  const input = lines[Symbol.asyncIterator]();
  let lineNo = 0;
  const next = async (): Promise<string | undefined> => {
    const r = await input.next();
    if (r.done) return undefined;
    lineNo++;
    return r.value;
  };
  // Checked before anything is opened for writing: a foreign or too new file changes nothing.
  const header = parseHeader(await next(), latest);
  const tables = Object.keys(header.tables);
  try {
    return await db.transaction(
      async (tx) => {
        const target = await lockedSchemaVersion(tx);
        if (target > header.schemaVersion) {
          throw new ImportRefusedError(
            `the target's schema is at version ${target}, newer than the file's (${header.schemaVersion}); import into a new database or data directory`,
          );
        }
        await migrateWithin(
          tx,
          migrations.filter((m) => m.version <= header.schemaVersion),
        );
        const catalog = await columnsOf(tx, tables);
        for (const table of tables) {
          const known = new Set((catalog.get(table) ?? []).map((c) => c.name));
          const missing = header.tables[table]?.filter((c) => !known.has(c)) ?? [];
          if (missing.length > 0) throw new TransferFormatError(`${table} has no column ${missing.join(', ')} at schema version ${header.schemaVersion}`, 1);
        }
        await refuseOccupied(tx);
        const sequences = await sequencesOf(tx, tables);
        const rows = await insertRows(tx, header, catalog, { next, line: () => lineNo }, sequences, options);
        await run(tx, SQL.transferForgetCache);
        if (header.schemaVersion < latest) await migrateWithin(tx, migrations);
        // What run_output's foreign key refused before migration 063: output of a session the
        // file does not hold (it would also collide with that session's seqs if one were made).
        const [orphan] = await run(tx, SQL.transferOrphanOutput, {});
        if (orphan) {
          throw new TransferFormatError(
            `run_output holds event ${String(orphan.seq)} of session ${String(orphan.session_id)} (tenant ${String(orphan.tenant_id)}), which the file does not hold`,
          );
        }
        return { schemaVersion: header.schemaVersion, rows };
      },
      { retryConflicts: false },
    );
  } finally {
    // An import that stopped early leaves the rest of the input unread: release it.
    await input.return?.();
  }
}

/** Locks the data tables against writers and refuses when any holds a row. */
async function refuseOccupied(tx: SqlExecutor): Promise<void> {
  const present = await columnsOf(tx, EXPORTED_TABLES);
  const tables = EXPORTED_TABLES.filter((t) => present.has(t));
  await tx.query(`LOCK TABLE ${tables.map(ident).join(', ')} IN EXCLUSIVE MODE`);
  const checks = tables.map((t) => `CASE WHEN EXISTS (SELECT 1 FROM ${ident(t)}) THEN ${literal(t)} END`);
  const [row] = await tx.query<{ occupied: string[] }>(`SELECT array_remove(ARRAY[${checks.join(', ')}]::text[], NULL) AS occupied`);
  const occupied = row?.occupied ?? [];
  if (occupied.length > 0) {
    throw new ImportRefusedError(`the target already holds data (${occupied.join(', ')}); import only into an empty database or data directory`);
  }
}

interface LineSource {
  next(): Promise<string | undefined>;
  line(): number;
}

async function insertRows(
  tx: SqlExecutor,
  header: TransferHeader,
  catalog: ReadonlyMap<string, Column[]>,
  source: LineSource,
  sequences: readonly OwnedSequence[],
  options: ImportOptions,
): Promise<Record<string, number>> {
  const batchRows = options.batchRows ?? 500;
  const batchBytes = options.batchBytes ?? 4 * 1024 * 1024;
  const tables = Object.keys(header.tables);
  const counts: Record<string, number> = Object.fromEntries(tables.map((t) => [t, 0]));
  // The highest id seen per sequence column, so the sequence moves past it even if the file's trailer says less.
  const highest = new Map<string, bigint>();
  let current = -1;
  let batch: string[] = [];
  let bytes = 0;

  const flush = async () => {
    const table = tables[current];
    if (batch.length === 0 || table === undefined) return;
    const names = header.tables[table] ?? [];
    const types = new Map((catalog.get(table) ?? []).map((c) => [c.name, c.type]));
    // JSON columns come from the line as they are (jsonb_populate_record would read JSON null as
    // SQL NULL); every other column from its text or JSON form, by the column type's own input.
    const values = names.map((c) =>
      types.get(c) === 'json' || types.get(c) === 'jsonb'
        ? `CASE WHEN l.line -> 'null' ? ${literal(c)} THEN NULL ELSE (l.line -> 'row' -> ${literal(c)})::${types.get(c)} END`
        : `r.${ident(c)}`,
    );
    const text =
      `INSERT INTO ${ident(table)} (${names.map(ident).join(', ')}) ` +
      `SELECT ${values.join(', ')} FROM jsonb_array_elements($1::text::jsonb) AS l(line) ` +
      `CROSS JOIN LATERAL jsonb_populate_record(NULL::${ident(table)}, l.line -> 'row') AS r`;
    try {
      await tx.query(text, [`[${batch.join(',')}]`]);
    } catch (err) {
      throw new TransferFormatError(`the database refused rows of ${table} (before line ${source.line()}): ${(err as Error).message}`);
    }
    batch = [];
    bytes = 0;
  };

  for (;;) {
    const text = await source.next();
    const line = source.line();
    if (text === undefined) {
      throw new TransferFormatError(`the file ends after line ${line} without its trailer: it is truncated; nothing was imported`);
    }
    const value = parseLine(text, line);
    if (typeof value.table === 'string') {
      const at = tables.indexOf(value.table);
      if (at < 0) throw new TransferFormatError(`a row of ${value.table}, which the header does not list`, line);
      if (at < current) throw new TransferFormatError(`a row of ${value.table} after rows of ${tables[current]}`, line);
      const row = value.row;
      const columns = header.tables[value.table] ?? [];
      if (!isObject(row) || Object.keys(row).length !== columns.length || !columns.every((c) => Object.hasOwn(row, c))) {
        throw new TransferFormatError(`a row of ${value.table} without exactly the header's columns`, line);
      }
      const nulls = value.null;
      if (nulls !== undefined && !(Array.isArray(nulls) && nulls.every((c) => typeof c === 'string' && row[c] === null))) {
        throw new TransferFormatError(`a row of ${value.table} whose "null" list names a column that is not null`, line);
      }
      if (at !== current || batch.length >= batchRows || bytes >= batchBytes) await flush();
      current = at;
      for (const s of sequences) {
        if (s.table !== value.table) continue;
        const id = row[s.column];
        if (id === null) continue;
        const n = parseInteger(id, line);
        const key = `${s.table}.${s.column}`;
        if (n > (highest.get(key) ?? 0n)) highest.set(key, n);
      }
      batch.push(text);
      bytes += text.length;
      counts[value.table] = (counts[value.table] ?? 0) + 1;
      continue;
    }
    if (value.end !== TRANSFER_FORMAT) throw new TransferFormatError('neither a row nor the trailer: the file is damaged', line);
    await flush();
    checkTrailer(value, counts, line);
    // Only blank lines may follow the trailer.
    for (let rest = await source.next(); rest !== undefined; rest = await source.next()) {
      if (rest.trim() !== '') throw new TransferFormatError('content after the trailer: the file is damaged', source.line());
    }
    const fileSequences = (value as unknown as TransferTrailer).sequences;
    for (const s of sequences) {
      const key = `${s.table}.${s.column}`;
      const inFile = fileSequences[key];
      const candidates = [highest.get(key) ?? null, inFile === null || inFile === undefined ? null : parseInteger(inFile, line)];
      const last = candidates.reduce<bigint | null>((a, b) => (b !== null && (a === null || b > a) ? b : a), null);
      await run(tx, SQL.transferSequenceSet, { sequenceName: s.sequence, value: last === null ? null : last.toString() });
    }
    return counts;
  }
}

function parseInteger(value: unknown, line: number): bigint {
  if ((typeof value === 'string' && /^-?\d+$/.test(value)) || Number.isSafeInteger(value)) return BigInt(value as string | number);
  throw new TransferFormatError(`${JSON.stringify(value)} is not an integer`, line);
}

function checkTrailer(trailer: Record<string, unknown>, counts: Record<string, number>, line: number): void {
  if (!isObject(trailer.rows) || !isObject(trailer.sequences)) throw new TransferFormatError('a trailer without row counts', line);
  const stated = trailer.rows;
  const tables = new Set([...Object.keys(stated), ...Object.keys(counts)]);
  for (const table of tables) {
    if (stated[table] !== (counts[table] ?? 0)) {
      throw new TransferFormatError(
        `the trailer counts ${String(stated[table] ?? 0)} rows of ${table} but the file holds ${counts[table] ?? 0}: the file is damaged`,
        line,
      );
    }
  }
}
