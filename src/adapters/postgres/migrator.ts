/**
 * Applies the numbered, append-only migrations in ./migrations under an advisory lock, in
 * one transaction, recording each in a ledger table. Refuses a schema newer than the code.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { SqlDatabase, SqlExecutor } from './database.js';
import { run, statements } from './sql.js';

const SQL = statements('migrationLock', 'migrationLedgerCreate', 'migrationLedgerVersions', 'migrationLedgerRecord');

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

const MIGRATIONS_DIR = fileURLToPath(new URL('./migrations/', import.meta.url));
// Any constant works; it only has to be the same for every instance.
const MIGRATION_LOCK_KEY = 7_301_204_551;

export function loadMigrations(dir: string = MIGRATIONS_DIR): Migration[] {
  return readdirSync(dir)
    .filter((f) => /^\d+_[\w-]+\.sql$/.test(f))
    .map((file) => ({
      version: Number.parseInt(file.split('_', 1)[0] ?? '', 10),
      name: file.replace(/\.sql$/, ''),
      sql: readFileSync(new URL(file, `file://${dir}`), 'utf8'),
    }))
    .sort((a, b) => a.version - b.version);
}

export class SchemaTooNewError extends Error {
  override name = 'SchemaTooNewError';
  readonly code = 'schema_too_new';
}

export interface MigrateResult {
  applied: string[];
  version: number;
}

export async function migrate(db: SqlDatabase, migrations: Migration[] = loadMigrations()): Promise<MigrateResult> {
  return db.transaction((tx) => migrateWithin(tx, migrations));
}

/** The versions applied so far; takes the migration lock for the rest of the transaction. */
async function lockedLedger(tx: SqlExecutor): Promise<Set<number>> {
  await run(tx, SQL.migrationLock, { key: MIGRATION_LOCK_KEY });
  await run(tx, SQL.migrationLedgerCreate);
  const rows = await run<{ version: number }>(tx, SQL.migrationLedgerVersions);
  return new Set(rows.map((r) => Number(r.version)));
}

/** The newest migration applied (0: none), holding the migration lock until the transaction ends. */
export async function lockedSchemaVersion(tx: SqlExecutor): Promise<number> {
  return Math.max(0, ...(await lockedLedger(tx)));
}

/**
 * `migrate` inside a transaction the caller owns, so other work commits or rolls back with the
 * schema (an import: a damaged file leaves an empty target unmigrated too).
 */
export async function migrateWithin(tx: SqlExecutor, migrations: Migration[] = loadMigrations()): Promise<MigrateResult> {
  const done = await lockedLedger(tx);
  const latest = migrations.at(-1)?.version ?? 0;
  const newest = Math.max(0, ...done);
  if (newest > latest) {
    throw new SchemaTooNewError(
      `database schema is at version ${newest} but this build knows only up to ${latest}; upgrade agent-sessions`,
    );
  }
  const applied: string[] = [];
  for (const m of migrations) {
    if (done.has(m.version)) continue;
    await tx.exec(m.sql);
    await run(tx, SQL.migrationLedgerRecord, { version: m.version, name: m.name });
    applied.push(m.name);
  }
  return { applied, version: latest };
}
