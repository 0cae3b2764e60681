/**
 * Applies the numbered, append-only migrations in ./migrations under an advisory lock, in
 * one transaction, recording each in a ledger table. Refuses a schema newer than the code.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { SqlDatabase } from './database.js';

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
  return db.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY]);
    await tx.query(`CREATE TABLE IF NOT EXISTS agent_sessions_migrations (
      version    integer PRIMARY KEY,
      name       text        NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`);
    const rows = await tx.query<{ version: number }>('SELECT version FROM agent_sessions_migrations ORDER BY version');
    const done = new Set(rows.map((r) => Number(r.version)));
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
      await tx.query('INSERT INTO agent_sessions_migrations (version, name) VALUES ($1, $2)', [m.version, m.name]);
      applied.push(m.name);
    }
    return { applied, version: latest };
  });
}
