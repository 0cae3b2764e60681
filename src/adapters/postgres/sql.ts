/**
 * The SQL of the PostgreSQL adapter: one static statement per operation, one file each in
 * ./sql/<operation>.sql, loaded once. A file opens with a header that says what the statement
 * does, names every parameter in order and describes the reply:
 *
 *   -- session-touch: marks activity on a live session (sliding expiry), guarded like every write.
 *   -- $1 tenant text
 *   -- $2 id uuid
 *   -- reply: the written row, or the current row with written = false; no row: not found
 *
 * Callers pass parameters by name (`run(db, SQL.sessionTouch, { tenant, id })`), so a statement
 * and its caller cannot disagree on positions, and every operation is exactly one statement
 * text (prepared once per connection, never assembled from fragments at run time).
 *
 * Outbox rows have one writer: a statement that emits events lists them in a CTE `events`
 * (tenant_id, session_id, ord, type, payload; a row without payload is an event that did not
 * happen) and ends with OUTBOX_WRITER, word for word. The loader refuses any other insert into
 * the outbox. A plain CTE, not a function: a PL/pgSQL call per written row cost about 15 % of a
 * session create (pgbench, 16 clients).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** Anything that runs a parameterized statement: a database or a transaction (database.ts). */
export interface Queryable {
  query<R = Record<string, unknown>>(text: string, params?: readonly unknown[]): Promise<R[]>;
}

export interface Statement {
  /** The file name without `.sql`. */
  readonly name: string;
  readonly text: string;
  /** Parameter names in position order ($1 first). */
  readonly params: readonly string[];
}

const SQL_DIR = fileURLToPath(new URL('./sql/', import.meta.url));

/** The one way a statement writes outbox rows (see above): in order, per session, in the statement's transaction. */
export const OUTBOX_WRITER = `emitted AS (
  INSERT INTO outbox (tenant_id, type, session_id, payload)
  SELECT e.tenant_id, e.type, e.session_id, e.payload FROM events e WHERE e.payload IS NOT NULL ORDER BY e.session_id, e.ord
)`;
const OUTBOX_INSERT = /\binsert\s+into\s+outbox\b/gi;
const PARAM_LINE = /^--\s*\$(\d+)\s+([a-z][A-Za-z0-9_]*)\b/;

/** Parses one statement file; throws when its header and its text disagree. */
export function parseStatement(name: string, source: string): Statement {
  const lines = source.split('\n');
  if (!lines[0]?.startsWith(`-- ${name}:`)) throw new Error(`sql/${name}.sql must open with "-- ${name}: <what it does>"`);
  const params: string[] = [];
  for (const line of lines) {
    if (!line.startsWith('--')) break;
    const m = PARAM_LINE.exec(line);
    if (!m) continue;
    if (Number(m[1]) !== params.length + 1) throw new Error(`sql/${name}.sql: parameter $${m[1]} is out of order`);
    params.push(m[2] as string);
  }
  if (!lines.some((l) => /^--\s*reply:/.test(l))) throw new Error(`sql/${name}.sql: the header must describe the reply ("-- reply: ...")`);
  const used = new Set([...source.replace(/^--.*$/gm, '').matchAll(/\$(\d+)/g)].map((m) => Number(m[1])));
  for (const n of used) {
    if (n < 1 || n > params.length) throw new Error(`sql/${name}.sql uses $${n}, which its header does not name`);
  }
  for (let n = 1; n <= params.length; n++) {
    if (!used.has(n)) throw new Error(`sql/${name}.sql names $${n} (${params[n - 1]}) but does not use it`);
  }
  const inserts = source.match(OUTBOX_INSERT)?.length ?? 0;
  if (inserts > 0 && (inserts > 1 || !source.includes(OUTBOX_WRITER))) {
    throw new Error(`sql/${name}.sql writes the outbox other than through OUTBOX_WRITER (src/adapters/postgres/sql.ts)`);
  }
  return Object.freeze({ name, text: source.trim(), params: Object.freeze(params) });
}

function camel(name: string): string {
  return name.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/** Every statement in `dir`, by the camelCase of its file name (`session-touch` → `sessionTouch`). */
export function loadStatements(dir: string = SQL_DIR): Readonly<Record<string, Statement>> {
  const out: Record<string, Statement> = {};
  for (const file of readdirSync(dir).sort()) {
    if (!file.endsWith('.sql')) continue;
    const name = file.slice(0, -4);
    out[camel(name)] = parseStatement(name, readFileSync(`${dir}/${file}`, 'utf8'));
  }
  return Object.freeze(out);
}

let loaded: Readonly<Record<string, Statement>> | null = null;

/**
 * The statements named, loaded on first use; throws at once when one is missing, so a
 * repository fails at construction, not at its first call.
 */
export function statements<const N extends string>(...names: N[]): Readonly<Record<N, Statement>> {
  loaded ??= loadStatements();
  const out = {} as Record<N, Statement>;
  for (const n of names) {
    const s = loaded[n];
    if (!s) throw new Error(`no SQL statement ${n} (sql/${n.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}.sql)`);
    out[n] = s;
  }
  return Object.freeze(out);
}

let names: Map<string, string> | null = null;

/**
 * The name of the statement whose text `text` is (the very string `run` passes), or null for
 * a text that is not one of the statement files (a migration script).
 */
export function statementName(text: string): string | null {
  loaded ??= loadStatements();
  names ??= new Map(Object.values(loaded).map((s) => [s.text, s.name]));
  return names.get(text) ?? null;
}

/** The positional parameters of `statement` from named values; throws on a missing or unknown name. */
export function bind(statement: Statement, values: Readonly<Record<string, unknown>>): unknown[] {
  const args = statement.params.map((p) => {
    if (!Object.hasOwn(values, p)) throw new Error(`sql/${statement.name}.sql: no value for ${p}`);
    const v = values[p];
    return v === undefined ? null : v;
  });
  for (const key of Object.keys(values)) {
    if (!statement.params.includes(key)) throw new Error(`sql/${statement.name}.sql has no parameter ${key}`);
  }
  return args;
}

/** Runs `statement` with named parameters on a database or a transaction. */
export function run<R = Record<string, unknown>>(
  db: Queryable,
  statement: Statement,
  values: Readonly<Record<string, unknown>> = {},
): Promise<R[]> {
  return db.query<R>(statement.text, bind(statement, values));
}
