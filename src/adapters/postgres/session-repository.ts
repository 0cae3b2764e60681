/**
 * The session repository on PostgreSQL (pg or PGlite). Every write is one statement: the
 * row change, its guards (version, fencing token, liveness, transition) and its outbox
 * events commit together in one round trip. When a guarded write changes nothing, the same
 * statement returns the current row so the caller learns why.
 */
import {
  ConflictError,
  LimitError,
  NotFoundError,
  ValidationError,
} from '../../core/errors.js';
import type { BatchDeleteResult, SessionLifetimes, SessionRepository, WriteGuards } from '../../core/ports.js';
import {
  COUNTER_NAMES,
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
import { isUuid } from '../../core/ids.js';
import { sqlState, type SqlDatabase } from './database.js';
import {
  effectiveStatusSql,
  type EventSpec,
  INTERNAL_COLUMNS_SQL,
  liveSql,
  mergeMetadataSql,
  notifyCte,
  outboxEventsCte,
  SLIDE_EXPIRY_SQL,
  uuidListSql,
  type WriteNotification,
} from './session-sql.js';
import { iso, rowToSession, type Row } from './rows.js';

export { rowToSession } from './rows.js';

const COUNTER_COLUMNS: Record<CounterName, string> = {
  totalTurns: 'total_turns',
  messageCount: 'message_count',
  totalCostUsd: 'total_cost_usd',
  inputTokens: 'input_tokens',
  outputTokens: 'output_tokens',
};

function rowToItem(r: Row): SessionItem {
  return {
    id: String(r.id),
    sessionId: String(r.session_id),
    seq: Number(r.seq),
    role: String(r.role),
    type: String(r.type),
    content: r.content,
    createdAt: iso(r.created_at),
  };
}

const SESSION_PAYLOAD = `jsonb_build_object('session', to_jsonb(u) - ${INTERNAL_COLUMNS_SQL})`;

interface GuardedWrite {
  tenant: string;
  id: string;
  /** Extra assignments, `col = expr` over alias s (the row) and cur (the row before). */
  set?: string;
  /** Extra condition over cur that must hold. */
  guard?: string;
  /** A size condition over cur; when it alone fails the write is a `limit_exceeded`. */
  limitGuard?: string;
  /** Whether the session must be live (not ended, not past expiry). */
  requireLive: boolean;
  /** Whether the write counts as activity (bumps last_active_at and slides expiry). */
  activity: boolean;
  guards: WriteGuards;
  params: unknown[];
  events: EventSpec[];
  /** Extra CTEs after upd, and a scalar SQL expression returned as `extra`. */
  ctes?: string;
  extra?: string;
}

interface WriteOutcome {
  written: boolean;
  session: Session;
  /** The newest fencing token the row has seen. */
  fence: number;
  withinLimits: boolean;
  extra: unknown;
}

/**
 * Near-cache invalidations sent by the write statement itself: `pg_notify(channel,
 * "<id> <version>")`, delivered when the write commits, so it cannot be lost after the commit
 * and costs no round trip of its own. A delete announces `deletedVersion`.
 */
export type { WriteNotification } from './session-sql.js';

export class PostgresSessionRepository implements SessionRepository {
  /** Largest stored metadata (bytes of its JSON text), checked on the merged result. */
  private readonly metadataLimitBytes: number | null;
  private readonly notification: WriteNotification | null;

  constructor(
    private readonly db: SqlDatabase,
    options: { metadataLimitBytes?: number; notify?: WriteNotification | null } = {},
  ) {
    this.metadataLimitBytes = options.metadataLimitBytes ?? null;
    this.notification = options.notify ?? null;
  }

  /**
   * A CTE `nt` notifying one "<id> <version>" per row of `source` (when configured), and the
   * join that makes the final SELECT evaluate it (an unreferenced SELECT CTE never runs).
   */
  private notifyCte(source: string, deleted = false): { cte: string; join: string } {
    return notifyCte(this.notification, source, deleted);
  }

  async ready(): Promise<void> {
    await this.db.ready();
  }

  async close(): Promise<void> {
    // The database is shared with other adapters; its owner closes it.
  }

  private eventsCte(source: string, events: EventSpec[]): string {
    return events.length === 0 ? '' : `, ${outboxEventsCte(source, events)}`;
  }

  private async guardedWrite(w: GuardedWrite): Promise<WriteOutcome | null> {
    const p = w.params.length;
    const params = [...w.params, w.id, w.tenant, w.guards.expectedVersion ?? null, w.guards.fencingToken ?? null];
    const [$id, $tenant, $version, $fence] = [p + 1, p + 2, p + 3, p + 4].map((n) => `$${n}`);
    const conditions = [
      `s.id = cur.id`,
      `(${$version}::bigint IS NULL OR cur.version = ${$version}::bigint)`,
      `(${$fence}::bigint IS NULL OR ${$fence}::bigint >= cur.fence)`,
    ];
    if (w.requireLive) conditions.push(liveSql('cur'));
    if (w.guard) conditions.push(w.guard);
    if (w.limitGuard) conditions.push(w.limitGuard);
    const assignments = ['version = s.version + 1', 'updated_at = now()'];
    if (w.activity) assignments.push('last_active_at = now()', `expires_at = ${SLIDE_EXPIRY_SQL}`);
    if (w.set) assignments.push(w.set);
    const notify = this.notifyCte('upd');
    const sql = `
      WITH cur AS (
        SELECT * FROM sessions WHERE id = ${$id}::uuid AND tenant_id = ${$tenant} FOR UPDATE
      ), upd AS (
        UPDATE sessions s SET ${assignments.join(', ')}
        FROM cur WHERE ${conditions.join(' AND ')}
        RETURNING s.*, cur.status AS prev_status
      )${w.ctes ?? ''}${this.eventsCte('upd', w.events)}${notify.cte}
      SELECT true AS written, upd.*, ${w.extra ?? 'NULL::jsonb'} AS extra, true AS within_limits FROM upd${notify.join}
      UNION ALL
      SELECT false, cur.*, cur.status, NULL::jsonb, ${w.limitGuard ?? 'true'} FROM cur WHERE NOT EXISTS (SELECT 1 FROM upd)`;
    const rows = await this.db.query<Row>(sql, params);
    const row = rows[0];
    if (!row) return null;
    return { written: row.written === true, session: rowToSession(row), fence: Number(row.fence), withinLimits: row.within_limits !== false, extra: row.extra };
  }

  /** Turns a write that changed nothing into the error that says why. */
  private explain(id: string, outcome: WriteOutcome | null, w: Pick<GuardedWrite, 'guards' | 'requireLive'>): never {
    if (!outcome) throw new NotFoundError('session', id);
    const s = outcome.session;
    const { expectedVersion, fencingToken } = w.guards;
    if (expectedVersion !== undefined && s.version !== expectedVersion) {
      throw new ConflictError('version_conflict', `session ${id} is at version ${s.version}, not ${expectedVersion}`, {
        currentVersion: s.version,
      });
    }
    if (!outcome.withinLimits) {
      throw new LimitError(`the merged metadata of session ${id} would exceed ${this.metadataLimitBytes} bytes`, {
        field: 'metadata',
        limit: this.metadataLimitBytes,
      });
    }
    if (fencingToken !== undefined && fencingToken < outcome.fence) {
      throw new ConflictError('stale_fencing_token', `fencing token ${fencingToken} is stale for session ${id}`);
    }
    const status = effectiveStatus(s);
    if (w.requireLive && ENDED_STATUSES.includes(status)) {
      throw new ConflictError('session_ended', `session ${id} is ${status}`, { status });
    }
    throw new ConflictError('invalid_transition', `session ${id} cannot make that change from ${status}`, { status });
  }

  private async write(w: GuardedWrite): Promise<WriteOutcome> {
    const outcome = await this.guardedWrite(w);
    if (outcome?.written) return outcome;
    return this.explain(w.id, outcome, w);
  }

  async create(tenant: string, id: string, input: CreateSessionInput, lifetimes: SessionLifetimes): Promise<Session> {
    const ttl = input.ttlSeconds === undefined ? lifetimes.ttlSeconds : input.ttlSeconds;
    const idle = input.idleTimeoutSeconds === undefined ? lifetimes.idleTimeoutSeconds : input.idleTimeoutSeconds;
    const notify = this.notifyCte('ins');
    const sql = `
      WITH ins AS (
        INSERT INTO sessions (id, tenant_id, user_id, org_id, status, model, title, system_prompt, workspace_path,
          mcp_client_ids, parent_session_id, metadata, ttl_seconds, idle_timeout_seconds, lifetime_ends_at, expires_at)
        SELECT $1::uuid, $2, $3, $4, $5, $6, $7, $8, $9,
          ARRAY(SELECT jsonb_array_elements_text($10::jsonb)), $11::uuid, $12::jsonb, $13::int, $14::int,
          now() + $15::int * interval '1 second',
          LEAST(now() + $13::int * interval '1 second', now() + $15::int * interval '1 second')
        WHERE $11::uuid IS NULL OR EXISTS (SELECT 1 FROM sessions p WHERE p.id = $11::uuid AND p.tenant_id = $2)
        ON CONFLICT (id) DO NOTHING
        RETURNING *
      )${this.eventsCte('ins', [['session.created', SESSION_PAYLOAD]])}${notify.cte}
      SELECT ins.* FROM ins${notify.join}`;
    const rows = await this.db.query<Row>(sql, [
      id,
      tenant,
      input.userId ?? null,
      input.orgId ?? null,
      input.status ?? 'idle',
      input.model ?? null,
      input.title ?? null,
      input.systemPrompt ?? null,
      input.workspacePath ?? null,
      JSON.stringify(input.mcpClientIds ?? []),
      input.parentSessionId ?? null,
      JSON.stringify(input.metadata ?? {}),
      ttl,
      idle,
      lifetimes.absoluteTimeoutSeconds,
    ]);
    const row = rows[0];
    if (row) return rowToSession(row);
    if (input.parentSessionId && !(await this.get(tenant, input.parentSessionId))) {
      throw new NotFoundError('session', input.parentSessionId);
    }
    throw new ConflictError('session_exists', `session ${id} already exists`, { id });
  }

  async get(tenant: string, id: string): Promise<Session | null> {
    const rows = await this.db.query<Row>('SELECT * FROM sessions WHERE id = $1::uuid AND tenant_id = $2', [id, tenant]);
    return rows[0] ? rowToSession(rows[0]) : null;
  }

  async getMany(tenant: string, ids: readonly string[]): Promise<Session[]> {
    if (ids.length === 0) return [];
    const rows = await this.db.query<Row>(
      `SELECT * FROM sessions WHERE tenant_id = $1 AND id IN ${uuidListSql('$2')}`,
      [tenant, JSON.stringify(ids)],
    );
    return rows.map(rowToSession);
  }

  async list(tenant: string, filter: ListSessionsFilter & { limit: number }): Promise<Page<Session>> {
    const params: unknown[] = [tenant];
    const where = ['s.tenant_id = $1'];
    if (filter.userId !== undefined) {
      params.push(filter.userId);
      where.push(`s.user_id = $${params.length}`);
    }
    if (filter.status !== undefined) {
      params.push(filter.status);
      where.push(`${effectiveStatusSql('s')} = $${params.length}`);
    }
    if (filter.updatedAfter !== undefined) {
      params.push(filter.updatedAfter);
      // Timestamps leave the API at millisecond precision; compare at that precision too.
      where.push(`date_trunc('milliseconds', s.updated_at) > $${params.length}::timestamptz`);
    }
    if (filter.cursor !== undefined) {
      const c = decodeCursor(filter.cursor, (v): v is { t: string; i: string } => {
        const { t, i } = (typeof v === 'object' && v !== null ? v : {}) as { t?: unknown; i?: unknown };
        // t is microseconds since the epoch (a bigint); i a session id.
        return typeof t === 'string' && /^\d{1,16}$/.test(t) && typeof i === 'string' && isUuid(i);
      });
      params.push(c.t, c.i);
      where.push(
        `(s.created_at, s.id) < (timestamptz 'epoch' + $${params.length - 1}::bigint * interval '1 microsecond', $${params.length}::uuid)`,
      );
    }
    params.push(filter.limit + 1);
    const rows = await this.db.query<Row>(
      `SELECT s.*, (extract(epoch FROM s.created_at) * 1000000)::bigint::text AS cursor_t
       FROM sessions s WHERE ${where.join(' AND ')}
       ORDER BY s.created_at DESC, s.id DESC LIMIT $${params.length}`,
      params,
    );
    const page = rows.slice(0, filter.limit);
    const last = page.at(-1);
    return {
      items: page.map(rowToSession),
      nextCursor: rows.length > filter.limit && last ? encodeCursor({ t: String(last.cursor_t), i: String(last.id) }) : null,
    };
  }

  async update(tenant: string, id: string, patch: UpdateSessionInput, guards: WriteGuards): Promise<Session> {
    const params: unknown[] = [];
    const sets: string[] = [];
    const column = (col: string, value: unknown, cast = '') => {
      params.push(value);
      sets.push(`${col} = $${params.length}${cast}`);
    };
    if (patch.model !== undefined) column('model', patch.model);
    if (patch.title !== undefined) column('title', patch.title);
    if (patch.systemPrompt !== undefined) column('system_prompt', patch.systemPrompt);
    if (patch.workspacePath !== undefined) column('workspace_path', patch.workspacePath);
    if (patch.idleTimeoutSeconds !== undefined) column('idle_timeout_seconds', patch.idleTimeoutSeconds, '::int');
    if (patch.mcpClientIds !== undefined) {
      params.push(JSON.stringify(patch.mcpClientIds));
      sets.push(`mcp_client_ids = ARRAY(SELECT jsonb_array_elements_text($${params.length}::jsonb))`);
    }
    let limitGuard: string | undefined;
    if (patch.metadata !== undefined) {
      // Shallow merge; keys set to null are removed.
      params.push(JSON.stringify(patch.metadata));
      const $patch = `$${params.length}::jsonb`;
      const merged = (row: string) => mergeMetadataSql(`${row}.metadata`, $patch);
      sets.push(`metadata = ${merged('s')}`);
      if (this.metadataLimitBytes !== null) {
        params.push(this.metadataLimitBytes);
        limitGuard = `octet_length((${merged('cur')})::text) <= $${params.length}::int`;
      }
    }
    let guard: string | undefined;
    if (patch.status !== undefined) {
      params.push(patch.status);
      const $status = `$${params.length}`;
      sets.push(`status = ${$status}`);
      params.push(JSON.stringify(statusesLeadingTo(patch.status)));
      guard = `cur.status IN (SELECT jsonb_array_elements_text($${params.length}::jsonb))`;
      if (ENDED_STATUSES.includes(patch.status)) {
        sets.push(`ended_at = now()`, `end_reason = COALESCE(s.end_reason, ${$status})`);
      }
    }
    params.push(JSON.stringify(patch));
    const changes = `$${params.length}::jsonb`;
    const { session } = await this.write({
      tenant,
      id,
      set: sets.join(', ') || undefined,
      guard,
      limitGuard,
      requireLive: true,
      activity: true,
      guards,
      params,
      events: [
        ['session.updated', `jsonb_build_object('version', u.version, 'changes', ${changes})`],
        [
          'session.status_changed',
          `jsonb_build_object('from', u.prev_status, 'to', u.status, 'version', u.version)`,
          'u.prev_status <> u.status',
        ],
        ['session.terminated', SESSION_PAYLOAD, `u.status = 'terminated'`],
      ],
    });
    return session;
  }

  async touch(tenant: string, id: string, guards: WriteGuards): Promise<Session> {
    const { session } = await this.write({ tenant, id, requireLive: true, activity: true, guards, params: [], events: [] });
    return session;
  }

  async incrementCounters(
    tenant: string,
    id: string,
    deltas: Partial<Record<CounterName, number>>,
    guards: WriteGuards,
  ): Promise<Session> {
    const params: unknown[] = [];
    const sets: string[] = [];
    for (const name of COUNTER_NAMES) {
      const delta = deltas[name];
      if (delta === undefined) continue;
      params.push(String(delta));
      const col = COUNTER_COLUMNS[name];
      sets.push(`${col} = s.${col} + $${params.length}::numeric`);
    }
    if (sets.length === 0) throw new ValidationError('no counter to increment');
    const { session } = await this.write({
      tenant,
      id,
      set: sets.join(', '),
      requireLive: true,
      activity: true,
      guards,
      params,
      events: [],
    });
    return session;
  }

  async terminate(tenant: string, id: string, reason: string, guards: WriteGuards): Promise<Session> {
    const w: GuardedWrite = {
      tenant,
      id,
      set: `status = 'terminated', ended_at = now(), end_reason = $1`,
      guard: `cur.status <> 'terminated'`,
      requireLive: false,
      activity: false,
      guards,
      params: [reason],
      events: [
        [
          'session.status_changed',
          `jsonb_build_object('from', u.prev_status, 'to', u.status, 'version', u.version)`,
        ],
        ['session.terminated', `jsonb_build_object('reason', u.end_reason, 'version', u.version)`],
      ],
    };
    const outcome = await this.guardedWrite(w);
    if (outcome?.written) return outcome.session;
    // Terminating a terminated session changes nothing and is not an error.
    const staleToken = guards.fencingToken !== undefined && outcome !== null && guards.fencingToken < outcome.fence;
    if (outcome && outcome.session.status === 'terminated' && guards.expectedVersion === undefined && !staleToken) {
      return outcome.session;
    }
    return this.explain(id, outcome, w);
  }

  async purge(tenant: string, id: string): Promise<boolean> {
    const result = await this.purgeMany(tenant, [id]);
    return result.deleted.length === 1;
  }

  async terminateMany(tenant: string, ids: readonly string[], reason: string): Promise<BatchDeleteResult> {
    const notify = this.notifyCte('upd');
    const rows = await this.db.query<Row>(
      `WITH cur AS (
         -- Locks in id order, so overlapping batches never deadlock.
         SELECT id, status FROM sessions
         WHERE tenant_id = $1 AND id IN ${uuidListSql('$2')} AND status <> 'terminated'
         ORDER BY id FOR UPDATE
       ), upd AS (
         UPDATE sessions s SET status = 'terminated', ended_at = now(), end_reason = $3,
           version = s.version + 1, updated_at = now()
         FROM cur WHERE s.id = cur.id
         RETURNING s.*, cur.status AS prev_status
       )${this.eventsCte('upd', [
         ['session.status_changed', `jsonb_build_object('from', u.prev_status, 'to', u.status, 'version', u.version)`],
         ['session.terminated', `jsonb_build_object('reason', u.end_reason, 'version', u.version)`],
       ])}${notify.cte}
       SELECT id FROM sessions WHERE tenant_id = $1 AND id IN ${uuidListSql('$2')}${notify.cte ? ' AND (SELECT n FROM nt) >= 0' : ''}`,
      [tenant, JSON.stringify(ids), reason],
    );
    return splitFound(ids, rows);
  }

  async purgeMany(tenant: string, ids: readonly string[]): Promise<BatchDeleteResult> {
    const notify = this.notifyCte('del', true);
    const rows = await this.db.query<Row>(
      `WITH del AS (
         DELETE FROM sessions s WHERE s.tenant_id = $1 AND s.id IN ${uuidListSql('$2')} RETURNING s.*
       )${this.eventsCte('del', [['session.deleted', `jsonb_build_object('version', u.version)`]])}${notify.cte}
       SELECT del.id FROM del${notify.join}`,
      [tenant, JSON.stringify(ids)],
    );
    return splitFound(ids, rows);
  }

  async fork(
    tenant: string,
    sourceId: string,
    newId: string,
    overrides: CreateSessionInput,
    lifetimes: SessionLifetimes,
  ): Promise<Session> {
    const ttl = overrides.ttlSeconds === undefined ? lifetimes.ttlSeconds : overrides.ttlSeconds;
    const notify = this.notifyCte('ins');
    const rows = await this.db.query<Row>(
      `WITH src AS (
         SELECT * FROM sessions WHERE id = $1::uuid AND tenant_id = $2
       ), ins AS (
         INSERT INTO sessions (id, tenant_id, user_id, org_id, status, model, title, system_prompt, workspace_path,
           mcp_client_ids, parent_session_id, metadata, total_turns, message_count, ttl_seconds, idle_timeout_seconds,
           lifetime_ends_at, expires_at, item_seq)
         SELECT $3::uuid, src.tenant_id, COALESCE($4, src.user_id), src.org_id, 'idle', COALESCE($5, src.model),
           COALESCE($6, src.title), src.system_prompt, src.workspace_path, src.mcp_client_ids, src.id,
           ${mergeMetadataSql('src.metadata', '$7::jsonb')}, src.total_turns, src.message_count, $8::int,
           src.idle_timeout_seconds,
           now() + $9::int * interval '1 second',
           LEAST(now() + $8::int * interval '1 second', now() + $9::int * interval '1 second'),
           src.item_seq
         FROM src
         ON CONFLICT (id) DO NOTHING
         RETURNING *
       ), copied AS (
         INSERT INTO session_items (session_id, seq, id, role, type, content, created_at)
         SELECT ins.id, i.seq, gen_random_uuid(), i.role, i.type, i.content, i.created_at
         FROM ins JOIN session_items i ON i.session_id = $1::uuid
       )${this.eventsCte('ins', [
         ['session.created', `jsonb_build_object('session', to_jsonb(u) - ${INTERNAL_COLUMNS_SQL}, 'forked_from', u.parent_session_id)`],
       ])}${notify.cte}
       SELECT ins.*, true AS inserted FROM ins${notify.join}
       UNION ALL SELECT src.*, false FROM src WHERE NOT EXISTS (SELECT 1 FROM ins)`,
      [
        sourceId,
        tenant,
        newId,
        overrides.userId ?? null,
        overrides.model ?? null,
        overrides.title ?? null,
        JSON.stringify(overrides.metadata ?? {}),
        ttl,
        lifetimes.absoluteTimeoutSeconds,
      ],
    );
    const row = rows[0];
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
      tenant,
      id: sessionId,
      set: `item_seq = s.item_seq + $1`,
      requireLive: true,
      activity: true,
      guards,
      params: [items.length, JSON.stringify(items.map((i) => ({ ...i, type: i.type ?? 'message' })))],
      ctes: `, added AS (
        INSERT INTO session_items (session_id, seq, id, role, type, content)
        SELECT u.id, u.item_seq - $1 + x.ord, (x.elem->>'id')::uuid, x.elem->>'role', x.elem->>'type', x.elem->'content'
        FROM upd u, jsonb_array_elements($2::jsonb) WITH ORDINALITY AS x(elem, ord)
        RETURNING *
      )`,
      extra: `(SELECT jsonb_agg(to_jsonb(a) ORDER BY a.seq) FROM added a)`,
      events: [
        [
          'item.added',
          `jsonb_build_object('count', $1::int, 'first_seq', u.item_seq - $1 + 1, 'last_seq', u.item_seq, 'version', u.version)`,
        ],
      ],
    });
    return { session, items: ((extra as Row[] | null) ?? []).map(rowToItem) };
  }

  async listItems(tenant: string, sessionId: string, query: ListItemsQuery & { limit: number }): Promise<Page<SessionItem>> {
    const params: unknown[] = [sessionId, tenant];
    let from = '0';
    if (query.cursor !== undefined) {
      const c = decodeCursor(query.cursor, (v): v is { s: number } =>
        typeof v === 'object' && v !== null && Number.isSafeInteger((v as { s?: unknown }).s),
      );
      params.push(c.s);
      from = `$${params.length}::bigint`;
    }
    let turnStart = '';
    if (query.lastTurns !== undefined) {
      // A turn starts at a user message; everything after it (tool calls, their results,
      // the reply) belongs to it, so a turn is never split.
      params.push(query.lastTurns);
      turnStart = `AND i.seq >= COALESCE((
        SELECT min(t.seq) FROM (
          SELECT seq FROM session_items WHERE session_id = $1::uuid AND role = 'user' AND type = 'message'
          ORDER BY seq DESC LIMIT $${params.length}
        ) t), 0)`;
    }
    params.push(query.limit + 1);
    const rows = await this.db.query<Row>(
      `SELECT i.*, s.id AS owner FROM sessions s
       LEFT JOIN session_items i ON i.session_id = s.id AND i.seq > ${from} ${turnStart}
       WHERE s.id = $1::uuid AND s.tenant_id = $2
       ORDER BY i.seq LIMIT $${params.length}`,
      params,
    );
    if (rows.length === 0) throw new NotFoundError('session', sessionId);
    const found = rows.filter((r) => r.seq !== null);
    const page = found.slice(0, query.limit);
    const last = page.at(-1);
    return {
      items: page.map(rowToItem),
      nextCursor: found.length > query.limit && last ? encodeCursor({ s: Number(last.seq) }) : null,
    };
  }

  async popItem(tenant: string, sessionId: string, guards: WriteGuards): Promise<{ session: Session; item: SessionItem | null }> {
    const { session, extra } = await this.write({
      tenant,
      id: sessionId,
      requireLive: true,
      activity: true,
      guards,
      params: [],
      ctes: `, popped AS (
        DELETE FROM session_items WHERE session_id = (SELECT id FROM upd)
          AND seq = (SELECT max(seq) FROM session_items WHERE session_id = (SELECT id FROM upd))
        RETURNING *
      )`,
      extra: `(SELECT to_jsonb(p) FROM popped p)`,
      events: [],
    });
    return { session, item: extra ? rowToItem(extra as Row) : null };
  }

  async clearItems(tenant: string, sessionId: string, guards: WriteGuards): Promise<{ session: Session; removed: number }> {
    const { session, extra } = await this.write({
      tenant,
      id: sessionId,
      requireLive: true,
      activity: true,
      guards,
      params: [],
      ctes: `, cleared AS (DELETE FROM session_items WHERE session_id = (SELECT id FROM upd) RETURNING 1)`,
      extra: `(SELECT to_jsonb(count(*)) FROM cleared)`,
      events: [],
    });
    return { session, removed: Number(extra ?? 0) };
  }
}

function splitFound(ids: readonly string[], rows: Row[]): BatchDeleteResult {
  const found = new Set(rows.map((r) => String(r.id)));
  const unique = [...new Set(ids.map((i) => i.toLowerCase()))];
  return { deleted: unique.filter((i) => found.has(i)), notFound: unique.filter((i) => !found.has(i)) };
}

/** Whether an error is PostgreSQL's unique violation (used by callers that insert). */
export function isUniqueViolation(err: unknown): boolean {
  return sqlState(err) === '23505';
}
