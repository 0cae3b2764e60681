/**
 * The database with one span per statement (OpenTelemetry database conventions): named by
 * its statement file (`session-get`), never by its text, and never with a parameter. Only
 * built when tracing is on; a statement run by background work alone (a poll, a heartbeat)
 * is traced only inside a span, so it cannot flood traces with roots of its own.
 */
import { errorType, type SpanAttributes, type Tracing } from '../../core/tracing.js';
import { sqlState, type SqlDatabase, type SqlExecutor, type TransactionOptions } from './database.js';
import { statementName } from './sql.js';

/** Where the statements go: `server.address`, `server.port`, `db.namespace` (null for PGlite). */
export interface DatabaseServer {
  address: string;
  port: number;
  namespace: string | null;
}

/** host, port and database of a connection string (never its credentials). */
export function databaseServer(connectionString: string): DatabaseServer | null {
  try {
    const url = new URL(connectionString);
    const database = decodeURIComponent(url.pathname.replace(/^\//, ''));
    return { address: url.hostname || 'localhost', port: Number(url.port || 5432), namespace: database === '' ? null : database };
  } catch {
    return null;
  }
}

/** What names a statement's span: its file, else its first keyword (`SELECT`), never more of the text. */
function operationOf(text: string): string {
  return statementName(text) ?? /^\s*([A-Za-z]+)/.exec(text)?.[1]?.toUpperCase() ?? 'SQL';
}

export function tracedDatabase(db: SqlDatabase, tracing: Tracing, server: DatabaseServer | null): SqlDatabase {
  const base: SpanAttributes = { 'db.system.name': 'postgresql' };
  if (server) {
    base['server.address'] = server.address;
    base['server.port'] = server.port;
    if (server.namespace !== null) base['db.namespace'] = server.namespace;
  }
  const traced = <T>(text: string, call: () => Promise<T>): Promise<T> => {
    const operation = operationOf(text);
    return tracing.span(
      operation,
      { kind: 'client', requireParent: true, attributes: { ...base, 'db.operation.name': operation } },
      async (span) => {
        try {
          return await call();
        } catch (err) {
          const state = sqlState((err as { cause?: unknown }).cause) ?? sqlState(err);
          if (state !== undefined && /^[0-9A-Z]{5}$/.test(state)) span.setAttribute('db.response.status_code', state);
          span.fail(errorType(err));
          throw err;
        }
      },
    );
  };
  const executor = (inner: SqlExecutor): SqlExecutor => ({
    query: <R>(text: string, params?: readonly unknown[]) => traced(text, () => inner.query<R>(text, params)),
    exec: (script: string) => traced(script, () => inner.exec(script)),
  });
  return {
    get kind() {
      return db.kind;
    },
    ...executor(db),
    transaction: <T>(fn: (tx: SqlExecutor) => Promise<T>, options?: TransactionOptions) =>
      db.transaction((tx) => fn(executor(tx)), options),
    get listening() {
      return db.listening;
    },
    listen: (channel, onPayload, onReset) => db.listen(channel, onPayload, onReset),
    ready: () => db.ready(),
    close: () => db.close(),
  };
}
