/**
 * One small SQL interface over two drivers: `pg` (a real PostgreSQL server) and PGlite
 * (PostgreSQL compiled to WebAssembly, on disk). Every query module is written against it,
 * so embedded and distributed mode run the same SQL.
 */
import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import pg from 'pg';
import { PGlite } from '@electric-sql/pglite';
import { AgentSessionsError, UnavailableError, ValidationError } from '../../core/errors.js';
import type { HealthCheck } from '../../core/ports.js';
import { DirectoryLock } from './directory-lock.js';
import { run, statements } from './sql.js';

const SQL = statements('databasePing');

export interface SqlExecutor {
  query<R = Record<string, unknown>>(text: string, params?: readonly unknown[]): Promise<R[]>;
  /** Runs a script of several statements without parameters (migrations). */
  exec(script: string): Promise<void>;
}

export interface TransactionOptions {
  /**
   * Run `fn` again when PostgreSQL aborts the transaction for a conflict (default true). A
   * function with effects outside the database (a publish) turns it off: the conflict then
   * fails the call with a retryable 503 and the caller decides.
   */
  retryConflicts?: boolean;
}

export interface SqlDatabase extends SqlExecutor {
  readonly kind: 'postgres' | 'pglite';
  transaction<T>(fn: (tx: SqlExecutor) => Promise<T>, options?: TransactionOptions): Promise<T>;
  /**
   * Subscribes to NOTIFY on a channel; resolves to an unsubscribe function. `onReset` is
   * called when the listening connection was lost (notifications may have been missed) and
   * again once it listens anew.
   */
  listen(channel: string, onPayload: (payload: string) => void, onReset?: () => void): Promise<() => Promise<void>>;
  /** Whether notifications are being received right now (false while reconnecting). */
  readonly listening?: boolean;
  /**
   * Whether a statement issued now joins a caller's transaction (ambient-transaction.ts), so a
   * write must not be grouped with other callers' writes (write-groups.ts). Absent: never.
   */
  readonly inTransaction?: boolean;
  ready(): Promise<void>;
  close(): Promise<void>;
}

/** Pool clients that got their error listener (transactionOnce). */
const guardedClients = new WeakSet<pg.PoolClient>();

/** SQLSTATE classes that mean "the server is not there", not "your statement is wrong". */
const UNAVAILABLE_SQLSTATE = /^(08|53|57|58)/;

/** Transient conflicts between transactions (serialization failure, deadlock): the work can simply run again. */
const CONFLICT_SQLSTATE = new Set(['40001', '40P01']);

/** A conflict seen inside a transaction, kept raw until the whole transaction has been retried. */
class Conflict extends Error {
  override name = 'Conflict';
  constructor(readonly original: unknown) {
    super('transaction conflict', { cause: original });
  }
}

function conflictOrTranslated(err: unknown): unknown {
  return CONFLICT_SQLSTATE.has(sqlState(err) ?? '') ? new Conflict(err) : translateError(err);
}

/** Waits before the retries of a conflicting statement or transaction (jittered, growing). */
const CONFLICT_BACKOFF_MS = [2, 5, 10, 20];

/**
 * The one retry policy of the adapter: a statement or a transaction that PostgreSQL aborted to
 * break a deadlock or a serialization conflict (thrown as a `Conflict` by the driver calls)
 * runs again, up to four more times with a short jittered pause; then the caller gets a
 * retryable 503. Other errors pass through. A transaction's function may therefore run more
 * than once: it must only do database work (or work that is safe to repeat).
 */
export async function retryConflicts<T>(fn: () => Promise<T>, retry = true): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (!(err instanceof Conflict)) throw err;
      const wait = retry ? CONFLICT_BACKOFF_MS[attempt] : undefined;
      if (wait === undefined) throw translateError(err.original);
      await new Promise((resolve) => setTimeout(resolve, wait / 2 + Math.random() * wait));
    }
  }
}

/**
 * Classifies a database error. A value the database refused (data exceptions, constraint
 * violations other than uniqueness, which callers handle) is the request's fault: 400. A
 * server that is not there, or a transient conflict that outlived its retries, is an outage:
 * 503. Anything else keeps its SQLSTATE and is a defect of ours.
 */
export function translateError(err: unknown): unknown {
  if (err instanceof AgentSessionsError) return err;
  const code = (err as { code?: unknown }).code;
  if (typeof code !== 'string' || !/^[0-9A-Z]{5}$/.test(code) || UNAVAILABLE_SQLSTATE.test(code)) {
    return new UnavailableError('database unavailable', err);
  }
  if (CONFLICT_SQLSTATE.has(code)) return new UnavailableError('database busy, try again', err);
  if (code.startsWith('22') || (code.startsWith('23') && code !== '23505')) {
    return new ValidationError('a value was not acceptable to the database', { sqlstate: code });
  }
  return err;
}

/** Readiness of the database: one trivial query, timed. */
export function databaseHealthCheck(db: SqlDatabase): HealthCheck {
  return {
    name: db.kind,
    async check() {
      const started = performance.now();
      try {
        await run(db, SQL.databasePing);
        return { name: db.kind, ok: true, latencyMs: performance.now() - started };
      } catch (err) {
        return { name: db.kind, ok: false, latencyMs: performance.now() - started, error: (err as Error).message };
      }
    },
  };
}

export function sqlState(err: unknown): string | undefined {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' ? code : undefined;
}

// int8 and numeric as JS numbers: counters and versions stay far below 2^53.
pg.types.setTypeParser(20, (v) => Number(v));
pg.types.setTypeParser(1700, (v) => Number(v));

export interface PgDatabaseOptions {
  connectionString: string;
  max?: number;
  /**
   * How long a query may wait for a connection (also in the pool's queue under load) before
   * the call fails as unavailable. A server that is down refuses at once; this bounds a hang.
   */
  connectionTimeoutMillis?: number;
  /**
   * A connection the pool has not lent for this long is closed (0: kept until the pool
   * closes; default 60 s). Not node-postgres' 10 s: a burst grows the pool to `max`, and
   * closing those connections together costs PostgreSQL a backend exit each (with the
   * connects the next burst makes), which on a small machine stalls the work beside it.
   */
  idleTimeoutMillis?: number;
  applicationName?: string;
  /**
   * Run parameterized statements as named prepared statements, so each connection parses and
   * plans a statement once instead of on every call (the session writes are CTEs whose
   * planning costs about as much as their execution). Turn off behind a pooler that cannot
   * keep prepared statements (PgBouncer in transaction mode before 1.21).
   */
  preparedStatements?: boolean;
}

/**
 * Names for prepared statements, by statement text. Bounded: the statements of this code base
 * are a fixed set, and a text beyond the bound (which would mean SQL built from values) simply
 * runs unprepared instead of growing every connection's statement cache.
 */
export class StatementNames {
  private readonly names = new Map<string, string>();
  private generation = 0;

  constructor(private readonly max = 500) {}

  nameFor(text: string): string | undefined {
    let name = this.names.get(text);
    if (name === undefined && this.names.size < this.max) {
      name = `as${this.generation}_${createHash('sha1').update(text).digest('hex').slice(0, 20)}`;
      this.names.set(text, name);
    }
    return name;
  }

  /**
   * Forgets every name, so each statement is prepared anew under a new one. For when the
   * schema changed under prepared statements (a migration by a newer instance during a
   * rolling upgrade): PostgreSQL refuses to run a prepared `RETURNING *` or `SELECT *` whose
   * result columns changed ("cached plan must not change result type").
   */
  reset(): void {
    this.generation++;
    this.names.clear();
  }

  /**
   * `reset`, unless `name` is already from an older generation: the queries that were in flight
   * when one migration landed all fail, and one reset serves them all.
   */
  resetAfter(name: string | undefined): void {
    if (name === undefined || name.startsWith(`as${this.generation}_`)) this.reset();
  }
}

/** A prepared statement whose result columns changed since it was prepared. */
function isStalePlan(err: unknown): boolean {
  return sqlState(err) === '0A000' && /cached plan must not change result type/i.test((err as Error).message ?? '');
}

function serverOf(connectionString: string): string {
  try {
    const url = new URL(connectionString);
    return `${url.hostname || 'localhost'}:${url.port || 5432}${url.pathname}`;
  } catch {
    return 'the configured DATABASE_URL';
  }
}

export class PgDatabase implements SqlDatabase {
  readonly kind = 'postgres' as const;
  private readonly pool: pg.Pool;
  private listenClient: pg.PoolClient | null = null;
  private readonly listeners = new Map<string, Set<(payload: string) => void>>();
  private readonly resetListeners = new Set<() => void>();
  private listenConnecting: Promise<pg.PoolClient> | null = null;
  private resubscribing: Promise<void> | null = null;
  private closed = false;
  private readonly statements: StatementNames | null;

  /** host:port/database of the connection string, never its credentials (for messages). */
  private readonly where: string;

  constructor(options: PgDatabaseOptions) {
    this.where = serverOf(options.connectionString);
    this.statements = options.preparedStatements === false ? null : new StatementNames();
    this.pool = new pg.Pool({
      connectionString: options.connectionString,
      max: options.max ?? 20,
      connectionTimeoutMillis: options.connectionTimeoutMillis ?? 10_000,
      idleTimeoutMillis: options.idleTimeoutMillis ?? 60_000,
      application_name: options.applicationName ?? 'agent-sessions',
    });
    // An idle client losing its connection must not crash the process.
    this.pool.on('error', () => undefined);
  }

  /** Resolves once a query went through; otherwise says which server could not be reached, and why. */
  async ready(): Promise<void> {
    try {
      await run(this, SQL.databasePing);
    } catch (err) {
      const reason = ((err as Error).cause as Error | undefined)?.message ?? (err as Error).message;
      throw new UnavailableError(`cannot connect to PostgreSQL at ${this.where}: ${reason}`, err);
    }
  }

  async query<R>(text: string, params?: readonly unknown[]): Promise<R[]> {
    // Every query here is one statement in its own transaction, so a conflict rolled all of it
    // back and it can run again.
    return retryConflicts(async () => {
      for (let attempt = 1; ; attempt++) {
        const statement = this.statement(text, params);
        try {
          const result = await this.pool.query(statement);
          return result.rows as R[];
        } catch (err) {
          // The statement did not run; prepare everything anew and run it again.
          if (attempt < 3 && this.statements && isStalePlan(err)) {
            this.statements.resetAfter(statement.name);
            continue;
          }
          throw conflictOrTranslated(err);
        }
      }
    });
  }

  /** A query config: named (prepared) when it has parameters; scripts stay unnamed. */
  private statement(text: string, params: readonly unknown[] | undefined): pg.QueryConfig {
    const values = params as unknown[] | undefined;
    const name = values && values.length > 0 ? this.statements?.nameFor(text) : undefined;
    return name === undefined ? { text, values } : { name, text, values };
  }

  async exec(script: string): Promise<void> {
    await this.query(script);
  }

  transaction<T>(fn: (tx: SqlExecutor) => Promise<T>, options: TransactionOptions = {}): Promise<T> {
    return retryConflicts(() => this.transactionOnce(fn), options.retryConflicts ?? true);
  }

  private async transactionOnce<T>(fn: (tx: SqlExecutor) => Promise<T>): Promise<T> {
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (err) {
      throw translateError(err);
    }
    // A checked-out client has no pool listener: a connection the server drops between two
    // statements of the transaction would be an uncaught 'error'. Its next statement fails
    // (and the client is released broken), which is how the caller learns of it.
    if (!guardedClients.has(client)) {
      guardedClients.add(client);
      client.on('error', () => undefined);
    }
    const tx: SqlExecutor = {
      query: async <R>(text: string, params?: readonly unknown[]) => {
        const statement = this.statement(text, params);
        try {
          return (await client.query(statement)).rows as R[];
        } catch (err) {
          // Inside a transaction the statement cannot simply run again: the transaction is
          // aborted. The next one prepares anew; this one is retryable (503).
          if (this.statements && isStalePlan(err)) {
            this.statements.resetAfter(statement.name);
            throw new UnavailableError('the database schema changed; try again', err);
          }
          throw conflictOrTranslated(err);
        }
      },
      exec: async (script: string) => {
        await tx.query(script);
      },
    };
    let broken = false;
    try {
      await tx.query('BEGIN');
      const result = await fn(tx);
      await tx.query('COMMIT');
      return result;
    } catch (err) {
      try {
        await client.query('ROLLBACK');
      } catch {
        broken = true;
      }
      throw err;
    } finally {
      client.release(broken);
    }
  }

  get listening(): boolean {
    return this.listenClient !== null && !this.closed;
  }

  async listen(channel: string, onPayload: (payload: string) => void, onReset?: () => void): Promise<() => Promise<void>> {
    if (onReset) this.resetListeners.add(onReset);
    let set = this.listeners.get(channel);
    if (!set) {
      set = new Set();
      this.listeners.set(channel, set);
      const client = await this.listenConnection();
      await client.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
    }
    set.add(onPayload);
    return async () => {
      set.delete(onPayload);
      if (onReset) this.resetListeners.delete(onReset);
    };
  }

  /** The one LISTEN connection; concurrent callers share one connect. */
  private listenConnection(): Promise<pg.PoolClient> {
    if (this.listenClient) return Promise.resolve(this.listenClient);
    this.listenConnecting ??= (async () => {
      const client = await this.pool.connect();
      // Closed while we waited (a resubscribe racing close): hand it back, or pool.end() hangs.
      if (this.closed) {
        client.release(true);
        throw new Error('database closed');
      }
      client.on('notification', (msg) => {
        for (const fn of this.listeners.get(msg.channel) ?? []) fn(msg.payload ?? '');
      });
      let lost = false;
      client.on('error', () => {
        // The LISTEN connection died (server restart): reconnect and re-subscribe. pg may
        // report more than one error for one dead connection; act on the first.
        if (lost) return;
        lost = true;
        if (this.listenClient === client) this.listenClient = null;
        // After close() it was already handed back; releasing twice throws.
        if (this.closed) return;
        client.release(true);
        for (const fn of this.resetListeners) fn();
        void this.resubscribe();
      });
      this.listenClient = client;
      return client;
    })().finally(() => {
      this.listenConnecting = null;
    });
    return this.listenConnecting;
  }

  private resubscribe(): Promise<void> {
    this.resubscribing ??= (async () => {
      for (let attempt = 0; !this.closed; attempt++) {
        try {
          const client = await this.listenConnection();
          for (const channel of this.listeners.keys()) await client.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
          // It died while we subscribed: go round again with a new one.
          if (this.listenClient !== client) continue;
          for (const fn of this.resetListeners) fn();
          return;
        } catch {
          await new Promise((r) => setTimeout(r, Math.min(100 * 2 ** attempt, 5_000)));
        }
      }
    })().finally(() => {
      this.resubscribing = null;
    });
    return this.resubscribing;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.listenClient?.release(true);
    this.listenClient = null;
    await this.pool.end();
  }
}

export interface PgliteDatabaseOptions {
  /** A directory for the data files; omit for an in-memory database (tests). */
  dataDir?: string;
}

type PgliteInstance = InstanceType<typeof PGlite>;

export class PgliteDatabase implements SqlDatabase {
  readonly kind = 'pglite' as const;
  private instance: PgliteInstance | null = null;
  private opening: Promise<void> | null = null;
  private closing: Promise<void> | null = null;
  private lock: DirectoryLock | null = null;

  constructor(private readonly options: PgliteDatabaseOptions = {}) {
    // In memory there is nothing to lock: open at once, as callers that skip ready() expect.
    if (!options.dataDir) this.instance = new PGlite();
  }

  /**
   * Takes the data directory's lock (throws `DataDirInUseError` when a live process holds it),
   * then opens PGlite: a second opener never touches the files.
   */
  ready(): Promise<void> {
    this.opening ??= (async () => {
      const { dataDir } = this.options;
      if (dataDir) {
        mkdirSync(dataDir, { recursive: true });
        this.lock = await DirectoryLock.acquire(dataDir);
      }
      try {
        this.instance ??= new PGlite(dataDir);
        await this.instance.waitReady;
      } catch (err) {
        await this.lock?.close();
        throw err;
      }
    })();
    return this.opening;
  }

  /** The data directory's lock and control channel (null in memory). */
  get directoryLock(): DirectoryLock | null {
    return this.lock;
  }

  private get db(): PgliteInstance {
    if (!this.instance) throw new UnavailableError('database not opened (call ready() first)');
    return this.instance;
  }

  async query<R>(text: string, params?: readonly unknown[]): Promise<R[]> {
    // A closed embedded database is an outage (503), like an unreachable server.
    if (this.closing) throw new UnavailableError('database closed');
    return retryConflicts(async () => {
      try {
        return (await this.db.query<R>(text, params as unknown[] | undefined)).rows;
      } catch (err) {
        throw conflictOrTranslated(err);
      }
    });
  }

  async exec(script: string): Promise<void> {
    await this.db.exec(script);
  }

  /** Errors are translated exactly as on PostgreSQL: the same violation is the same answer on every path. */
  transaction<T>(fn: (tx: SqlExecutor) => Promise<T>, options: TransactionOptions = {}): Promise<T> {
    if (this.closing) return Promise.reject(new UnavailableError('database closed'));
    return retryConflicts(async () => {
      let failedInside = false;
      try {
        return await this.db.transaction(async (t) => {
          try {
            return await fn({
              query: async <R>(text: string, params?: readonly unknown[]) => {
                try {
                  return (await t.query<R>(text, params as unknown[] | undefined)).rows;
                } catch (err) {
                  throw conflictOrTranslated(err);
                }
              },
              exec: async (script: string) => {
                try {
                  await t.exec(script);
                } catch (err) {
                  throw conflictOrTranslated(err);
                }
              },
            });
          } catch (err) {
            failedInside = true;
            throw err;
          }
        });
      } catch (err) {
        // BEGIN or COMMIT failed (not the function): translated like any statement.
        throw failedInside ? err : conflictOrTranslated(err);
      }
    }, options.retryConflicts ?? true);
  }

  readonly listening = true;

  async listen(channel: string, onPayload: (payload: string) => void): Promise<() => Promise<void>> {
    // In-process: notifications cannot be missed, so there is never a reset.
    return this.db.listen(channel, onPayload);
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      // A close while opening waits for the open, so the lock is never released under PGlite.
      await this.opening?.catch(() => undefined);
      try {
        await this.instance?.close();
      } finally {
        await this.lock?.close();
      }
    })();
    return this.closing;
  }
}
