/**
 * The session repository on PostgreSQL (pg or PGlite): sql/session-*.sql. Every write is one
 * statement: the row change, its guards (revision, fencing token, liveness, transition) and its
 * outbox events (through the one outbox writer) commit together in one round trip; near caches
 * hear of the write after the commit (pg-invalidation-bus.ts). The guards read the row the
 * statement locked, never its snapshot of the row. When a guarded write changes nothing, the same
 * statement returns the current row so the caller learns why.
 */
import {
  ConflictError,
  LimitError,
  NotFoundError,
  ValidationError,
} from '../../core/errors.js';
import type { BatchDeleteResult, ErasedBatch, SessionLifetimes, SessionRepository, WriteGuards } from '../../core/ports.js';
import {
  COUNTER_NAMES,
  DEFAULT_ITEM_TYPE,
  effectiveStatus,
  ENDED_STATUSES,
  statusesLeadingTo,
  type CounterName,
  type CreateSessionInput,
  type ListItemsQuery,
  type ListSessionsFilter,
  type NewItem,
  type Page,
  type Session,
  type SessionItem,
  type UpdateSessionInput,
} from '../../core/types.js';
import { decodeCursor, encodeCursor } from '../../core/cursor.js';
import { isSessionId } from '../../core/ids.js';
import type { SqlDatabase } from './database.js';
import { createdRowToSession, iso, rowToSession, type Row } from './rows.js';
import { run, statements, type Statement } from './sql.js';
import { WriteGroups, type WriteGroupStats } from './write-groups.js';


const SQL = statements(
  'sessionCreate',
  'sessionCreateMany',
  'sessionGet',
  'sessionGetMany',
  'sessionList',
  'sessionListByUser',
  'sessionUpdate',
  'sessionTouch',
  'sessionIncrementCounters',
  'sessionIncrementCountersMany',
  'sessionTerminate',
  'sessionTerminateMany',
  'sessionPurgeMany',
  'eraseBusy',
  'eraseSessions',
  'eraseOutbox',
  'sessionFork',
  'sessionAppendItems',
  'sessionListItems',
  'sessionListItemsDesc',
  'sessionPopItem',
  'sessionClearItems',
);

function rowToItem(r: Row): SessionItem {
  return {
    id: String(r.id),
    sessionId: String(r.session_id),
    seq: Number(r.seq),
    clientId: r.client_id === null || r.client_id === undefined ? null : String(r.client_id),
    role: r.role === null || r.role === undefined ? null : String(r.role),
    type: String(r.type),
    content: r.content,
    createdAt: iso(r.created_at),
  };
}

/** A guarded write: one of the session-*.sql statements that reply with `written` and a row. */
interface GuardedWrite {
  statement: Statement;
  tenant: string;
  id: string;
  guards: WriteGuards;
  /** The statement's own parameters, besides tenant, id and the guards. */
  values?: Readonly<Record<string, unknown>>;
  /** Whether the session must be live (not ended, not past expiry): how a refusal is explained. */
  requireLive: boolean;
}

/** session-create's parameters (the list and the object as JSON text). */
interface NewSessionValues {
  tenant: string;
  id: string;
  userId: string | null;
  orgId: string | null;
  status: string;
  model: string | null;
  title: string | null;
  systemPrompt: string | null;
  workspacePath: string | null;
  mcpClientIds: string;
  parentSessionId: string | null;
  metadata: string;
  ttlSeconds: number | null;
  idleTimeoutSeconds: number | null;
  absoluteTimeoutSeconds: number | null;
}

/** session-increment-counters-many's entry for one increment. */
interface CounterIncrement {
  tenant: string;
  id: string;
  expectedRevision: number | null;
  fencingToken: number | null;
  deltas: Partial<Record<CounterName, number>>;
}

function sessionKey(tenant: string, id: string): string {
  return `${tenant}\u0000${id}`;
}

/** A group statement's reply matched back to its calls: each call's row by tenant and id, or null. */
function rowsByCall(group: readonly { tenant: string; id: string }[], rows: readonly Row[]): (Row | null)[] {
  const byKey = new Map(rows.map((r) => [sessionKey(String(r.tenant_id), String(r.id)), r]));
  return group.map((v) => byKey.get(sessionKey(v.tenant, v.id)) ?? null);
}

interface WriteOutcome {
  written: boolean;
  session: Session;
  /** The newest fencing token the row has seen. */
  fence: number;
  withinLimits: boolean;
  extra: unknown;
}

export class PostgresSessionRepository implements SessionRepository {
  /** Largest stored metadata (bytes of its JSON text), checked on the merged result. */
  private readonly metadataLimitBytes: number | null;

  /** Concurrent creates, grouped into one statement and one commit (write-groups.ts). */
  private readonly creates = new WriteGroups<NewSessionValues, Row | null>({
    one: (v) => this.createOne(v),
    many: (group) => this.createMany(group),
    key: (v) => sessionKey(v.tenant, v.id),
  });

  /**
   * Concurrent increments, grouped likewise; a group of one is just a call the statement
   * below makes (null: not written, so the caller's single statement runs).
   */
  private readonly increments = new WriteGroups<CounterIncrement, Row | null>({
    one: async () => null,
    many: async (group) => {
      return rowsByCall(group, await run(this.db, SQL.sessionIncrementCountersMany, { increments: JSON.stringify(group) }));
    },
    key: (v) => sessionKey(v.tenant, v.id),
  });

  constructor(
    private readonly db: SqlDatabase,
    options: { metadataLimitBytes?: number } = {},
  ) {
    this.metadataLimitBytes = options.metadataLimitBytes ?? null;
  }

  async ready(): Promise<void> {
    await this.db.ready();
  }

  /** Statements sent for grouped creates and increments, and the calls they carried. */
  writeGroupStats(): { creates: WriteGroupStats; increments: WriteGroupStats } {
    return { creates: { ...this.creates.stats }, increments: { ...this.increments.stats } };
  }

  async close(): Promise<void> {
    // The database is shared with other adapters; its owner closes it.
  }

  private async guardedWrite(w: GuardedWrite): Promise<WriteOutcome | null> {
    const [row] = await run(this.db, w.statement, {
      tenant: w.tenant,
      id: w.id,
      expectedRevision: w.guards.expectedRevision ?? null,
      fencingToken: w.guards.fencingToken ?? null,
      ...w.values,
    });
    if (!row) return null;
    return {
      written: row.written === true,
      session: rowToSession(row),
      fence: Number(row.fence),
      withinLimits: row.within_limits !== false,
      extra: row.extra ?? null,
    };
  }

  /** Turns a write that changed nothing into the error that says why. */
  private explain(id: string, outcome: WriteOutcome | null, w: Pick<GuardedWrite, 'guards' | 'requireLive'>): never {
    if (!outcome) throw new NotFoundError('session', id);
    throw (
      this.refusal(id, outcome, w) ??
      new ConflictError('invalid_transition', `session ${id} cannot make that change from ${effectiveStatus(outcome.session)}`, {
        status: effectiveStatus(outcome.session),
      })
    );
  }

  /** The guard the current row fails (revision, limits, fencing token, liveness), or null when it passes them all. */
  private refusal(id: string, outcome: WriteOutcome, w: Pick<GuardedWrite, 'guards' | 'requireLive'>): ConflictError | LimitError | null {
    const s = outcome.session;
    const { expectedRevision, fencingToken } = w.guards;
    if (expectedRevision !== undefined && s.revision !== expectedRevision) {
      return new ConflictError('version_conflict', `session ${id} is at revision ${s.revision}, not ${expectedRevision}`, {
        currentRevision: s.revision,
      });
    }
    if (!outcome.withinLimits) {
      return new LimitError(`the merged metadata of session ${id} would exceed ${this.metadataLimitBytes} bytes`, {
        field: 'metadata',
        limit: this.metadataLimitBytes,
      });
    }
    if (fencingToken !== undefined && fencingToken < outcome.fence) {
      return new ConflictError('stale_fencing_token', `fencing token ${fencingToken} is stale for session ${id}`);
    }
    const status = effectiveStatus(s);
    if (w.requireLive && ENDED_STATUSES.includes(status)) {
      return new ConflictError('session_ended', `session ${id} is ${status}`, { status });
    }
    return null;
  }

  private async write(w: GuardedWrite): Promise<WriteOutcome> {
    const outcome = await this.guardedWrite(w);
    if (outcome?.written) return outcome;
    return this.explain(w.id, outcome, w);
  }

  async create(tenant: string, id: string, input: CreateSessionInput, lifetimes: SessionLifetimes): Promise<Session> {
    const values: NewSessionValues = {
      tenant,
      id,
      userId: input.userId ?? null,
      orgId: input.orgId ?? null,
      status: input.status ?? 'idle',
      model: input.model ?? null,
      title: input.title ?? null,
      systemPrompt: input.systemPrompt ?? null,
      workspacePath: input.workspacePath ?? null,
      // JSON text now: a group is sent later, and must store what the caller passed now.
      mcpClientIds: JSON.stringify(input.mcpClientIds ?? []),
      parentSessionId: input.parentSessionId ?? null,
      metadata: JSON.stringify(input.metadata ?? {}),
      ttlSeconds: input.ttlSeconds === undefined ? lifetimes.ttlSeconds : input.ttlSeconds,
      idleTimeoutSeconds: input.idleTimeoutSeconds === undefined ? lifetimes.idleTimeoutSeconds : input.idleTimeoutSeconds,
      absoluteTimeoutSeconds: lifetimes.absoluteTimeoutSeconds,
    };
    // Inside a caller's transaction the insert must commit with it: alone, on that transaction.
    let row: Row | null;
    if (this.db.inTransaction) {
      row = await this.createOne(values);
    } else {
      row = await this.creates.submit(values);
      // Its group may have held the parent too, created after the statement's snapshot.
      if (!row && values.parentSessionId !== null) row = await this.createOne(values);
    }
    if (row) return createdRowToSession(row);
    if (input.parentSessionId && !(await this.get(tenant, input.parentSessionId))) {
      throw new NotFoundError('session', input.parentSessionId);
    }
    throw new ConflictError('session_exists', `session ${id} already exists`, { id });
  }

  private async createOne(values: NewSessionValues): Promise<Row | null> {
    const [row] = await run(this.db, SQL.sessionCreate, { ...values });
    return row ?? null;
  }

  private async createMany(group: readonly NewSessionValues[]): Promise<(Row | null)[]> {
    return rowsByCall(group, await run(this.db, SQL.sessionCreateMany, { sessions: JSON.stringify(group) }));
  }

  async get(tenant: string, id: string): Promise<Session | null> {
    const [row] = await run(this.db, SQL.sessionGet, { id, tenant });
    return row ? rowToSession(row) : null;
  }

  async getMany(tenant: string, ids: readonly string[]): Promise<Session[]> {
    if (ids.length === 0) return [];
    return (await run(this.db, SQL.sessionGetMany, { tenant, ids: JSON.stringify(ids) })).map(rowToSession);
  }

  async list(tenant: string, filter: ListSessionsFilter & { limit: number }): Promise<Page<Session>> {
    let cursor: { t: string; i: string } | null = null;
    if (filter.cursor !== undefined) {
      cursor = decodeCursor(filter.cursor, (v): v is { t: string; i: string } => {
        const { t, i } = (typeof v === 'object' && v !== null ? v : {}) as { t?: unknown; i?: unknown };
        // t is microseconds since the epoch (a bigint); i a session id.
        return typeof t === 'string' && /^\d{1,16}$/.test(t) && isSessionId(i);
      });
    }
    const values = {
      tenant,
      status: filter.status ?? null,
      updatedAfter: filter.updatedAfter ?? null,
      // An empty search is no search.
      search: filter.search || null,
      cursorT: cursor?.t ?? null,
      cursorId: cursor?.i ?? null,
      limit: filter.limit + 1,
    };
    // Listing one user's sessions reads their own index.
    const rows =
      filter.userId === undefined
        ? await run(this.db, SQL.sessionList, values)
        : await run(this.db, SQL.sessionListByUser, { ...values, userId: filter.userId });
    const page = rows.slice(0, filter.limit);
    const last = page.at(-1);
    return {
      items: page.map(rowToSession),
      nextCursor: rows.length > filter.limit && last ? encodeCursor({ t: String(last.cursor_t), i: String(last.id) }) : null,
    };
  }

  async update(tenant: string, id: string, patch: UpdateSessionInput, guards: WriteGuards): Promise<Session> {
    const { session } = await this.write({
      statement: SQL.sessionUpdate,
      tenant,
      id,
      guards,
      // The patch is also the `changes` of session.updated, exactly as given.
      values: {
        patch: JSON.stringify(patch),
        allowedFrom: patch.status === undefined ? null : JSON.stringify(statusesLeadingTo(patch.status)),
        metadataLimit: this.metadataLimitBytes,
      },
      requireLive: true,
    });
    return session;
  }

  async touch(tenant: string, id: string, guards: WriteGuards): Promise<Session> {
    const { session } = await this.write({ statement: SQL.sessionTouch, tenant, id, guards, requireLive: true });
    return session;
  }

  async incrementCounters(
    tenant: string,
    id: string,
    deltas: Partial<Record<CounterName, number>>,
    guards: WriteGuards,
  ): Promise<Session> {
    const known: Partial<Record<CounterName, number>> = {};
    for (const name of COUNTER_NAMES) if (deltas[name] !== undefined) known[name] = deltas[name];
    if (Object.keys(known).length === 0) throw new ValidationError('no counter to increment');
    if (!this.db.inTransaction) {
      // Grouped with concurrent increments of other sessions; one the group did not write
      // (busy, refused, absent) goes alone below, which waits for its row and says why.
      const row = await this.increments.submit({
        tenant,
        id,
        expectedRevision: guards.expectedRevision ?? null,
        fencingToken: guards.fencingToken ?? null,
        deltas: known,
      });
      if (row) return rowToSession(row);
    }
    const w: GuardedWrite = {
      statement: SQL.sessionIncrementCounters,
      tenant,
      id,
      guards,
      values: { deltas: JSON.stringify(known) },
      requireLive: true,
    };
    // The statement checks its guards in the UPDATE's WHERE, which reads the statement's
    // snapshot of the row (and the newest version only when the snapshot's passes). A guard
    // that a write committed after that snapshot turned from failing to passing (the
    // revision an If-Match names, just written) leaves the row unwritten although the
    // current row, which the statement then locks and returns, passes every guard: run it
    // again, on a newer snapshot. The fencing token and liveness only ever turn the other way.
    let outcome = await this.guardedWrite(w);
    for (let attempt = 1; attempt < 3 && outcome && !outcome.written && this.refusal(id, outcome, w) === null; attempt++) {
      outcome = await this.guardedWrite(w);
    }
    if (outcome?.written) return outcome.session;
    return this.explain(id, outcome, w);
  }

  async terminate(tenant: string, id: string, reason: string, guards: WriteGuards): Promise<Session> {
    const w: GuardedWrite = { statement: SQL.sessionTerminate, tenant, id, guards, values: { reason }, requireLive: false };
    const outcome = await this.guardedWrite(w);
    if (outcome?.written) return outcome.session;
    // Terminating a terminated session changes nothing and is not an error.
    const staleToken = guards.fencingToken !== undefined && outcome !== null && guards.fencingToken < outcome.fence;
    if (outcome && outcome.session.status === 'terminated' && guards.expectedRevision === undefined && !staleToken) {
      return outcome.session;
    }
    return this.explain(id, outcome, w);
  }

  async purge(tenant: string, id: string): Promise<boolean> {
    const result = await this.purgeMany(tenant, [id]);
    return result.deleted.length === 1;
  }

  async terminateMany(tenant: string, ids: readonly string[], reason: string): Promise<BatchDeleteResult> {
    const rows = await run(this.db, SQL.sessionTerminateMany, { tenant, ids: JSON.stringify(ids), reason });
    return splitFound(ids, rows);
  }

  async purgeMany(tenant: string, ids: readonly string[]): Promise<BatchDeleteResult> {
    const rows = await run(this.db, SQL.sessionPurgeMany, { tenant, ids: JSON.stringify(ids) });
    return splitFound(ids, rows);
  }

  async eraseBusy(tenant: string, userId: string | null): Promise<number> {
    const [row] = await run(this.db, SQL.eraseBusy, { tenant, userId });
    return Number(row?.busy ?? 0);
  }

  async eraseBatch(tenant: string, userId: string | null, limit: number): Promise<ErasedBatch> {
    // Nothing here acts outside the database, so a transaction aborted by a conflict simply
    // runs again (the default) and finds what is left.
    return this.db.transaction(async (tx) => {
      const [row] = await run(tx, SQL.eraseSessions, { tenant, userId, limit });
      const ids = ((row?.ids as string[] | null) ?? []).map(String);
      const busy = Number(row?.busy ?? 0);
      // A statement of its own, after the sessions are gone and locked: its snapshot sees every
      // event written by a write that committed while the first statement waited for a lock.
      const outbox = busy > 0 ? [{ deleted: 0 }] : await run(tx, SQL.eraseOutbox, { tenant, userId, ids: JSON.stringify(ids) });
      return {
        ids,
        items: Number(row?.items ?? 0),
        runs: Number(row?.runs ?? 0),
        outputEvents: Number(row?.output_events ?? 0),
        outbox: Number(outbox[0]?.deleted ?? 0),
        busy,
      };
    });
  }

  async fork(
    tenant: string,
    sourceId: string,
    newId: string,
    overrides: CreateSessionInput,
    lifetimes: SessionLifetimes,
  ): Promise<Session> {
    const [row] = await run(this.db, SQL.sessionFork, {
      sourceId,
      tenant,
      newId,
      userId: overrides.userId ?? null,
      model: overrides.model ?? null,
      title: overrides.title ?? null,
      metadata: JSON.stringify(overrides.metadata ?? {}),
      ttlSeconds: overrides.ttlSeconds === undefined ? lifetimes.ttlSeconds : overrides.ttlSeconds,
      absoluteTimeoutSeconds: lifetimes.absoluteTimeoutSeconds,
    });
    if (!row) throw new NotFoundError('session', sourceId);
    if (row.inserted !== true) throw new ConflictError('session_exists', `session ${newId} already exists`, { id: newId });
    return rowToSession(row);
  }

  async appendItems(
    tenant: string,
    sessionId: string,
    items: ReadonlyArray<NewItem & { id: string }>,
    guards: WriteGuards,
  ): Promise<{ session: Session; items: SessionItem[] }> {
    const { session, extra } = await this.write({
      statement: SQL.sessionAppendItems,
      tenant,
      id: sessionId,
      guards,
      // Every field explicit (null when absent): the statement compares bodies as jsonb.
      values: {
        items: JSON.stringify(
          items.map((i) => ({
            id: i.id,
            client_id: i.clientId ?? null,
            role: i.role ?? null,
            type: i.type ?? DEFAULT_ITEM_TYPE,
            content: i.content,
          })),
        ),
      },
      requireLive: true,
    });
    return { session, items: ((extra as Row[] | null) ?? []).map(rowToItem) };
  }

  async listItems(tenant: string, sessionId: string, query: ListItemsQuery & { limit: number }): Promise<Page<SessionItem>> {
    const descending = query.order === 'desc';
    // A cursor carries its direction (`d` on newest-first pages) and continues only in it.
    let fromSeq: number | null = null;
    if (query.cursor !== undefined) {
      fromSeq = decodeCursor(query.cursor, (v): v is { s: number; d?: 1 } => {
        const { s, d } = (typeof v === 'object' && v !== null ? v : {}) as { s?: unknown; d?: unknown };
        return Number.isSafeInteger(s) && (descending ? d === 1 : d === undefined);
      }).s;
    }
    const values = { sessionId, tenant, lastTurns: query.lastTurns ?? null, limit: query.limit + 1 };
    const rows = descending
      ? await run(this.db, SQL.sessionListItemsDesc, { ...values, beforeSeq: fromSeq })
      : await run(this.db, SQL.sessionListItems, { ...values, afterSeq: fromSeq });
    if (rows.length === 0) throw new NotFoundError('session', sessionId);
    const found = rows.filter((r) => r.seq !== null);
    const page = found.slice(0, query.limit);
    const last = page.at(-1);
    return {
      items: page.map(rowToItem),
      nextCursor:
        found.length > query.limit && last ? encodeCursor(descending ? { s: Number(last.seq), d: 1 } : { s: Number(last.seq) }) : null,
    };
  }

  async popItem(tenant: string, sessionId: string, guards: WriteGuards): Promise<{ session: Session; item: SessionItem | null }> {
    const { session, extra } = await this.write({ statement: SQL.sessionPopItem, tenant, id: sessionId, guards, requireLive: true });
    return { session, item: extra ? rowToItem(extra as Row) : null };
  }

  async clearItems(tenant: string, sessionId: string, guards: WriteGuards): Promise<{ session: Session; removed: number }> {
    const { session, extra } = await this.write({ statement: SQL.sessionClearItems, tenant, id: sessionId, guards, requireLive: true });
    return { session, removed: Number(extra ?? 0) };
  }
}

function splitFound(ids: readonly string[], rows: Row[]): BatchDeleteResult {
  const found = new Set(rows.map((r) => String(r.id)));
  const unique = [...new Set(ids)];
  return { deleted: unique.filter((i) => found.has(i)), notFound: unique.filter((i) => !found.has(i)) };
}
