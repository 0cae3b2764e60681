/**
 * SessionService: the session and conversation-history operations, over a repository (the
 * truth) and an optional cache. Validation of limits and ids happens here so the library
 * and the HTTP API enforce the same rules.
 */
import { sleep, throwIfAborted } from './abort.js';
import { afterCommit } from './commit-effects.js';
import { AgentSessionsError, ConflictError, LimitError, LockTimeoutError, NotFoundError, ValidationError } from './errors.js';
import { isSessionId, sessionKey, uuidv7 } from './ids.js';
import { jsonBytes, MAX_ITEM_CLIENT_ID, MAX_SEARCH_LENGTH, type Limits } from './limits.js';
import { checkJsonValue, type JsonShapeLimits } from './json-shape.js';
import type {
  BatchDeleteResult,
  CacheOrigin,
  SessionCache,
  SessionLifetimes,
  SessionLockStore,
  SessionRepository,
  WriteGuards,
} from './ports.js';
import { NO_SESSION_TELEMETRY, type SessionTelemetry } from './telemetry.js';
import { NO_TRACING, traceMethods, type TracedMethod, type Tracing } from './tracing.js';
import {
  COUNTER_NAMES,
  DEFAULT_TENANT,
  ITEM_ORDERS,
  withEffectiveStatus,
  type CallOptions,
  type CounterName,
  type CreateSessionInput,
  type ListItemsQuery,
  type ListSessionsFilter,
  type NewItem,
  type Page,
  type Session,
  type SessionItem,
  type UpdateSessionInput,
  type WriteOptions,
} from './types.js';

export interface SessionServiceOptions {
  repository: SessionRepository;
  cache?: SessionCache | null;
  lifetimes: SessionLifetimes;
  limits: Limits;
  /** Called when a cache tier fails; the call goes on without it. */
  onCacheError?: (err: unknown) => void;
  /** Where `withSessionLock` takes its leases. */
  locks?: SessionLockStore | null;
  /** Where repository reads and lock waits are reported (metrics). */
  telemetry?: SessionTelemetry;
  /** Where the operations are traced (a span each); default: not at all. */
  tracing?: Tracing;
}

/** The operations traced, one span each (`session.<operation>`). */
const SESSION_OPERATIONS: Readonly<Record<string, TracedMethod>> = {
  create: { span: 'session.create', idArgument: false, result: 'session' },
  getOrCreate: { span: 'session.get_or_create' },
  get: { span: 'session.get' },
  find: { span: 'session.find' },
  getMany: { span: 'session.get_many', idArgument: false },
  list: { span: 'session.list', idArgument: false },
  update: { span: 'session.update' },
  modify: { span: 'session.modify' },
  touch: { span: 'session.touch' },
  incrementCounters: { span: 'session.increment_counters' },
  terminate: { span: 'session.terminate' },
  purge: { span: 'session.purge' },
  deleteMany: { span: 'session.delete_many', idArgument: false },
  fork: { span: 'session.fork', result: 'session' },
  withSessionLock: { span: 'session.lock' },
  appendItems: { span: 'session.items.append' },
  listItems: { span: 'session.items.list' },
  popItem: { span: 'session.items.pop' },
  clearItems: { span: 'session.items.clear' },
};

export interface SessionLockOptions extends CallOptions {
  /** How long the lease lasts without renewal (default 10 s); it is renewed every third of it. */
  leaseMs?: number;
  /** How long to wait for the lease before failing with `lock_timeout` (default 5 s). */
  timeoutMs?: number;
}

/** What the function run under `withSessionLock` receives. */
export interface SessionLockContext {
  /** Pass as `fencingToken` on writes: a write with an older token than the newest is rejected. */
  fencingToken: number;
  /** Fires when the lease is lost (renewal failed) or the caller's signal fires. */
  signal: AbortSignal;
}

export interface ModifyOptions extends CallOptions {
  /** How many times a revision conflict (`version_conflict`) is retried (default 10). */
  retries?: number;
}

export class SessionService {
  protected readonly repository: SessionRepository;
  protected readonly cache: SessionCache | null;
  protected readonly lifetimes: SessionLifetimes;
  readonly limits: Limits;
  private readonly jsonShape: JsonShapeLimits;
  private readonly onCacheError: (err: unknown) => void;
  protected readonly locks: SessionLockStore | null;
  private readonly telemetry: SessionTelemetry;

  /** Conversation history of a session. */
  readonly items = {
    append: (sessionId: string, items: NewItem[], opts?: WriteOptions) => this.appendItems(sessionId, items, opts),
    list: (sessionId: string, query?: ListItemsQuery, opts?: CallOptions) => this.listItems(sessionId, query, opts),
    pop: (sessionId: string, opts?: WriteOptions) => this.popItem(sessionId, opts),
    clear: (sessionId: string, opts?: WriteOptions) => this.clearItems(sessionId, opts),
  };

  constructor(options: SessionServiceOptions) {
    this.repository = options.repository;
    this.cache = options.cache ?? null;
    this.lifetimes = options.lifetimes;
    this.limits = options.limits;
    this.jsonShape = { depth: options.limits.jsonDepth, nodes: options.limits.jsonNodes };
    this.onCacheError = options.onCacheError ?? (() => undefined);
    this.locks = options.locks ?? null;
    this.telemetry = options.telemetry ?? NO_SESSION_TELEMETRY;
    traceMethods(this, options.tracing ?? NO_TRACING, SESSION_OPERATIONS);
  }

  async create(input: CreateSessionInput = {}, opts: CallOptions = {}): Promise<Session> {
    throwIfAborted(opts.signal);
    if (input.id !== undefined) this.checkId(input.id);
    if (input.parentSessionId !== undefined && input.parentSessionId !== null) this.checkId(input.parentSessionId);
    this.checkFields(input);
    const session = await this.repository.create(tenantOf(opts), input.id ?? uuidv7(), input, this.lifetimes);
    // A new session: no cache holds an older version of it, so the answer does not wait for
    // the caches (CacheOrigin `created`).
    await this.cacheSet(session, 'created');
    return session;
  }

  /** Returns the session, or creates it with `input` when it does not exist. */
  async getOrCreate(id: string, input: Omit<CreateSessionInput, 'id'> = {}, opts: CallOptions = {}): Promise<Session> {
    return (await this.ensure(id, input, opts)).session;
  }

  /**
   * `getOrCreate` that says which it did (`PUT /v1/sessions/{id}`: 200 or 201). `input` is
   * checked even when the session exists, so a bad body is refused whatever the state. Two
   * callers racing on a new id both succeed: one creates, the other finds its session.
   */
  async ensure(id: string, input: Omit<CreateSessionInput, 'id'> = {}, opts: CallOptions = {}): Promise<{ session: Session; created: boolean }> {
    throwIfAborted(opts.signal);
    this.checkId(id);
    if (input.parentSessionId !== undefined && input.parentSessionId !== null) this.checkId(input.parentSessionId);
    this.checkFields(input);
    const existing = await this.find(id, opts);
    if (existing) return { session: existing, created: false };
    try {
      return { session: await this.create({ ...input, id }, opts), created: true };
    } catch (err) {
      if (err instanceof AgentSessionsError && err.code === 'session_exists') return { session: await this.get(id, opts), created: false };
      throw err;
    }
  }

  get(id: string, opts: CallOptions = {}): Promise<Session> {
    return this.lookup(id, opts, true) as Promise<Session>;
  }

  /** Like `get`, but resolves to null for a session that does not exist. */
  find(id: string, opts: CallOptions = {}): Promise<Session | null> {
    return this.lookup(id, opts, false);
  }

  /**
   * `find` itself, under `get` and `find` alike (so a traced `get` is one span, not two);
   * `required`: a missing session rejects with not_found. A near-cache hit is the one callback
   * that has the cache's answer, with no promise hop after it (`getFor`), and skips the id's
   * check: the near cache holds only sessions read or written under a checked id, and an id
   * it does not hold is checked before anything else is asked (the cache asks its shared
   * tier only for a session id). The checks before the cache run synchronously and reject
   * the returned promise, as an async function would.
   */
  private lookup(id: string, opts: CallOptions, required: boolean): Promise<Session | null> {
    let tenant: string;
    try {
      throwIfAborted(opts.signal);
      tenant = tenantOf(opts);
    } catch (err) {
      return Promise.reject(err);
    }
    const cache = this.cache;
    const loaded = (hit: Session | null): Session | Promise<Session | null> => (hit ? withEffectiveStatus(hit) : this.load(tenant, id, required));
    // Through `getFor` the id is checked only on a miss; the other ways check it first (below).
    const answer = (hit: Session | null): Session | Promise<Session | null> => {
      if (!hit) this.checkId(id);
      return loaded(hit);
    };
    if (cache?.getFor) {
      try {
        // It answers its own failures as misses: it rejects only with what `answer` threw.
        return cache.getFor(tenant, id, answer);
      } catch (err) {
        this.onCacheError(err);
        return Promise.resolve(null).then(answer);
      }
    }
    try {
      this.checkId(id);
    } catch (err) {
      return Promise.reject(err);
    }
    if (!cache) return this.load(tenant, id, required);
    const fromRepository = (err: unknown): Promise<Session | null> => {
      this.onCacheError(err);
      return this.load(tenant, id, required);
    };
    let cached: Promise<Session | null>;
    try {
      cached = cache.get(sessionKey(tenant, id));
    } catch (err) {
      return fromRepository(err);
    }
    return cached.then(loaded, fromRepository);
  }

  /** `lookup` past the cache: the repository, then the snapshot is written back. */
  private async load(tenant: string, id: string, required: boolean): Promise<Session | null> {
    const session = await this.repository.get(tenant, id);
    this.telemetry.repositoryRead(session ? 1 : 0, session ? 0 : 1);
    if (!session) {
      if (required) throw new NotFoundError('session', id);
      return null;
    }
    await this.cacheSet(session, 'read');
    return withEffectiveStatus(session);
  }

  async exists(id: string, opts: CallOptions = {}): Promise<boolean> {
    return (await this.find(id, opts)) !== null;
  }

  /** The sessions among `ids` that exist, in the order asked. */
  async getMany(ids: readonly string[], opts: CallOptions = {}): Promise<Session[]> {
    throwIfAborted(opts.signal);
    this.checkBatch(ids);
    const tenant = tenantOf(opts);
    const wanted = [...new Set(ids)];
    const byId = new Map<string, Session>();
    if (this.cache?.getMany) {
      try {
        // Keyed by tenant and id: every hit is this tenant's.
        for (const s of (await this.cache.getMany(wanted.map((id) => sessionKey(tenant, id)))).values()) byId.set(s.id, s);
      } catch (err) {
        this.onCacheError(err);
      }
    }
    const missing = wanted.filter((id) => !byId.has(id));
    if (missing.length > 0) {
      const rows = await this.repository.getMany(tenant, missing);
      this.telemetry.repositoryRead(rows.length, missing.length - rows.length);
      for (const s of rows) byId.set(s.id, s);
      await Promise.all(rows.map((s) => this.cacheSet(s, 'read')));
    }
    return ids.flatMap((id) => {
      const s = byId.get(id);
      return s ? [withEffectiveStatus(s)] : [];
    });
  }

  async list(filter: ListSessionsFilter = {}, opts: CallOptions = {}): Promise<Page<Session>> {
    throwIfAborted(opts.signal);
    if (filter.updatedAfter !== undefined && Number.isNaN(Date.parse(filter.updatedAfter))) {
      throw new ValidationError('updated_after must be a date-time', { field: 'updated_after' });
    }
    if (filter.search !== undefined && filter.search.length > MAX_SEARCH_LENGTH) {
      throw new ValidationError(`a search is at most ${MAX_SEARCH_LENGTH} characters`, { field: 'q' });
    }
    const page = await this.repository.list(tenantOf(opts), { ...filter, limit: this.pageSize(filter.limit) });
    return { items: page.items.map((s) => withEffectiveStatus(s)), nextCursor: page.nextCursor };
  }

  async update(id: string, patch: UpdateSessionInput, opts: WriteOptions = {}): Promise<Session> {
    throwIfAborted(opts.signal);
    this.checkId(id);
    this.checkFields(patch);
    if (patch.status === 'expired') {
      // Expiry is the system's verdict (deadline or sweep), never a caller's.
      throw new ConflictError('invalid_transition', 'a session cannot be set to expired; it expires by its deadlines', {
        status: 'expired',
      });
    }
    return this.written(await this.repository.update(tenantOf(opts), id, patch, await this.guards(id, opts)));
  }

  /**
   * Read-modify-write: reads the session, lets `change` compute a patch from it, and writes
   * it conditionally on the revision read, retrying when another writer changed the session's
   * own fields first (an item append or a counter meanwhile is no conflict).
   */
  async modify(id: string, change: (s: Session) => UpdateSessionInput, opts: ModifyOptions = {}): Promise<Session> {
    this.checkId(id);
    const retries = opts.retries ?? 10;
    for (let attempt = 0; ; attempt++) {
      throwIfAborted(opts.signal);
      const current = await this.repository.get(tenantOf(opts), id);
      if (!current) throw new NotFoundError('session', id);
      try {
        return await this.update(id, change(withEffectiveStatus(current)), { ...opts, expectedRevision: current.revision });
      } catch (err) {
        if (!(err instanceof ConflictError && err.code === 'version_conflict') || attempt >= retries) throw err;
      }
      // Writers that collided would collide again in lockstep; a random, growing pause spreads them.
      await new Promise((resolve) => setTimeout(resolve, Math.random() * Math.min(2 ** (attempt + 1), 250)));
    }
  }

  async touch(id: string, opts: WriteOptions = {}): Promise<Session> {
    throwIfAborted(opts.signal);
    this.checkId(id);
    return this.written(await this.repository.touch(tenantOf(opts), id, await this.guards(id, opts)));
  }

  async incrementCounters(id: string, deltas: Partial<Record<CounterName, number>>, opts: WriteOptions = {}): Promise<Session> {
    throwIfAborted(opts.signal);
    this.checkId(id);
    const names = Object.keys(deltas);
    if (names.length === 0) throw new ValidationError('name at least one counter');
    for (const name of names) {
      const delta = deltas[name as CounterName];
      if (!COUNTER_NAMES.includes(name as CounterName)) throw new ValidationError(`unknown counter ${name}`, { field: name });
      const integral = name !== 'totalCostUsd';
      if (typeof delta !== 'number' || !Number.isFinite(delta) || delta < 0 || (integral && !Number.isSafeInteger(delta))) {
        throw new ValidationError(`${name} must be a non-negative ${integral ? 'integer' : 'number'}`, { field: name });
      }
    }
    return this.written(await this.repository.incrementCounters(tenantOf(opts), id, deltas, await this.guards(id, opts)));
  }

  async terminate(id: string, reason = 'terminated', opts: WriteOptions = {}): Promise<Session> {
    throwIfAborted(opts.signal);
    this.checkId(id);
    this.checkText('reason', reason);
    return this.written(await this.repository.terminate(tenantOf(opts), id, reason, await this.guards(id, opts)));
  }

  /** Deletes the session with its items, runs and output. Resolves to false if it did not exist. */
  async purge(id: string, opts: CallOptions = {}): Promise<boolean> {
    throwIfAborted(opts.signal);
    this.checkId(id);
    const deleted = await this.repository.purge(tenantOf(opts), id);
    // Only a real deletion touches the cache (a purge of nothing leaves no tombstone).
    if (deleted) await this.evictDeleted(tenantOf(opts), id);
    return deleted;
  }

  async deleteMany(
    ids: readonly string[],
    options: { purge?: boolean; reason?: string } = {},
    opts: CallOptions = {},
  ): Promise<BatchDeleteResult> {
    throwIfAborted(opts.signal);
    this.checkBatch(ids);
    const tenant = tenantOf(opts);
    const result = options.purge
      ? await this.repository.purgeMany(tenant, ids)
      : await this.repository.terminateMany(tenant, ids, options.reason ?? 'terminated');
    await Promise.all(result.deleted.map((id) => (options.purge ? this.evictDeleted(tenant, id) : this.cacheInvalidate(tenant, id))));
    return result;
  }

  /** A new session with `parentSessionId` = `id`, its settings and a copy of its items. */
  async fork(id: string, overrides: CreateSessionInput = {}, opts: CallOptions = {}): Promise<Session> {
    throwIfAborted(opts.signal);
    this.checkId(id);
    if (overrides.id !== undefined) this.checkId(overrides.id);
    this.checkFields(overrides);
    const session = await this.repository.fork(
      tenantOf(opts),
      id,
      overrides.id ?? uuidv7(),
      overrides,
      this.lifetimes,
    );
    await this.cacheSet(session, 'created');
    return session;
  }

  /**
   * Runs `fn` while holding a lease on the session, so callers on any instance that use this
   * method take turns. Locks are for efficiency: pass `fencingToken` on the writes made
   * inside, and a holder that lost its lease (paused past it) has its writes rejected with
   * `stale_fencing_token`. Waits with backoff (10 ms doubling to 500 ms) and fails with
   * `lock_timeout` after `timeoutMs`. The lease is renewed while `fn` runs; if renewal fails,
   * `signal` fires. Reads through this instance inside `fn` see at least the version that was
   * committed when the lease was taken (every earlier holder's writes).
   */
  async withSessionLock<T>(id: string, fn: (lock: SessionLockContext) => Promise<T>, opts: SessionLockOptions = {}): Promise<T> {
    throwIfAborted(opts.signal);
    this.checkId(id);
    if (!this.locks) throw new AgentSessionsError('unavailable', 'no lock store is configured');
    const leaseMs = opts.leaseMs ?? 10_000;
    const timeoutMs = opts.timeoutMs ?? 5_000;
    if (!Number.isSafeInteger(leaseMs) || leaseMs < 10) throw new ValidationError('leaseMs must be an integer of at least 10');
    const tenant = tenantOf(opts);
    const started = performance.now();
    const deadline = Date.now() + timeoutMs;
    let delay = 10;
    let lease = await this.locks.tryAcquire(tenant, id, leaseMs);
    while (!lease) {
      this.telemetry.lockConflict();
      const left = deadline - Date.now();
      if (left <= 0) {
        this.telemetry.lockTimedOut((performance.now() - started) / 1000);
        throw new LockTimeoutError(id, timeoutMs);
      }
      // Full jitter keeps waiters on several instances from retrying in lockstep.
      await sleep(Math.min(left, delay / 2 + (Math.random() * delay) / 2), opts.signal);
      delay = Math.min(delay * 2, 500);
      lease = await this.locks.tryAcquire(tenant, id, leaseMs);
    }
    this.telemetry.lockAcquired((performance.now() - started) / 1000);
    const held = lease;
    // The previous holder's write may have been acknowledged before its invalidation reached
    // this instance; the lease read the committed version, so the near cache serves nothing
    // older to this holder (reads outside a lock pay nothing for it).
    this.cache?.noteCommitted?.(sessionKey(tenant, id), held.sessionVersion);
    const lost = new AbortController();
    const onCallerAbort = () => lost.abort(opts.signal?.reason);
    opts.signal?.addEventListener('abort', onCallerAbort, { once: true });
    const loseLease = (reason: unknown) => {
      if (lost.signal.aborted) return;
      this.telemetry.lockLost();
      lost.abort(reason);
    };
    const renewer = setInterval(() => {
      held.renew(leaseMs).then(
        (ok) => {
          if (!ok) loseLease(new AgentSessionsError('lock_timeout', `lease on session ${id} was lost`));
        },
        loseLease,
      );
    }, Math.max(5, Math.floor(leaseMs / 3)));
    try {
      return await fn({ fencingToken: held.fencingToken, signal: lost.signal });
    } finally {
      clearInterval(renewer);
      opts.signal?.removeEventListener('abort', onCallerAbort);
      await held.release().catch(() => undefined);
    }
  }

  private async appendItems(sessionId: string, items: NewItem[], opts: WriteOptions = {}) {
    throwIfAborted(opts.signal);
    this.checkId(sessionId);
    if (items.length === 0) throw new ValidationError('append at least one item');
    if (items.length > this.limits.itemsPerAppend) {
      throw new LimitError(`at most ${this.limits.itemsPerAppend} items per append`, { limit: this.limits.itemsPerAppend });
    }
    const clientIds = new Set<string>();
    for (const item of items) {
      if (item.clientId !== undefined) {
        if (typeof item.clientId !== 'string' || item.clientId.length === 0 || item.clientId.length > MAX_ITEM_CLIENT_ID) {
          throw new ValidationError(`client_id must be a string of 1 to ${MAX_ITEM_CLIENT_ID} characters`, { field: 'client_id' });
        }
        // One item per client id: two in a batch would leave which one is stored to chance.
        if (clientIds.has(item.clientId)) {
          throw new ValidationError(`client_id ${JSON.stringify(item.clientId)} appears twice in the batch`, { field: 'client_id' });
        }
        clientIds.add(item.clientId);
      }
      if (item.role !== undefined && item.role !== null && (typeof item.role !== 'string' || item.role.length === 0)) {
        throw new ValidationError('role must be a non-empty string when given', { field: 'role' });
      }
      this.checkText('role', item.role);
      if (item.type !== undefined) this.checkText('type', item.type);
      if (item.content === undefined) throw new ValidationError('every item needs content');
      checkJsonValue(item.content, this.jsonShape, 'content');
      if (jsonBytes(item.content) > this.limits.itemBytes) {
        throw new LimitError(`item content exceeds ${this.limits.itemBytes} bytes`, { limit: this.limits.itemBytes });
      }
    }
    const result = await this.repository.appendItems(
      tenantOf(opts),
      sessionId,
      items.map((i) => ({ ...i, id: uuidv7() })),
      await this.guards(sessionId, opts),
    );
    await this.cacheSet(result.session);
    return result;
  }

  private async listItems(sessionId: string, query: ListItemsQuery = {}, opts: CallOptions = {}): Promise<Page<SessionItem>> {
    throwIfAborted(opts.signal);
    this.checkId(sessionId);
    if (query.lastTurns !== undefined && (!Number.isSafeInteger(query.lastTurns) || query.lastTurns < 1)) {
      throw new ValidationError('last_turns must be a positive integer', { field: 'last_turns' });
    }
    if (query.order !== undefined && !ITEM_ORDERS.includes(query.order)) {
      throw new ValidationError(`order must be one of ${ITEM_ORDERS.join(', ')}`, { field: 'order' });
    }
    const limit = query.lastTurns !== undefined && query.limit === undefined ? this.limits.maxPageSize : this.pageSize(query.limit);
    return this.repository.listItems(tenantOf(opts), sessionId, { ...query, limit });
  }

  private async popItem(sessionId: string, opts: WriteOptions = {}) {
    throwIfAborted(opts.signal);
    this.checkId(sessionId);
    const result = await this.repository.popItem(tenantOf(opts), sessionId, await this.guards(sessionId, opts));
    await this.cacheSet(result.session);
    return result;
  }

  private async clearItems(sessionId: string, opts: WriteOptions = {}) {
    throwIfAborted(opts.signal);
    this.checkId(sessionId);
    const result = await this.repository.clearItems(tenantOf(opts), sessionId, await this.guards(sessionId, opts));
    await this.cacheSet(result.session);
    return result;
  }

  /**
   * Brings the caches up to a session row written outside this service (a run's status
   * change): `origin` says whether its statement already told other instances.
   */
  refreshCache(session: Session, origin: CacheOrigin = 'write'): Promise<void> {
    return this.cacheSet(session, origin);
  }

  /**
   * Brings every cache tier to the session's committed row, or drops it when the row is gone:
   * for an answer replayed to a retry (Idempotency-Key), whose first execution may have died
   * between its commit and its cache update, so no instance serves an older version after
   * the replay acknowledged the write.
   */
  async resync(id: string, opts: CallOptions = {}): Promise<void> {
    if (!this.cache || !isSessionId(id)) return;
    const tenant = tenantOf(opts);
    const row = await this.repository.get(tenant, id);
    if (row) await this.cacheSet(row, 'write');
    else await this.cacheInvalidate(tenant, id);
  }

  /** Drops a session from every cache tier (the sweeps ended or removed it). */
  evictCache(tenant: string, id: string): Promise<void> {
    return this.cacheInvalidate(tenant, id);
  }

  /**
   * A session's row was deleted (purge, batch purge, retention purge, erasure): drops it from every cache tier and
   * drops what the lock store keeps for it (the Redis lease counter). Not for an expired
   * session, whose row stays (evictCache).
   */
  async evictDeleted(tenant: string, id: string): Promise<void> {
    // After the delete committed; like the cache steps, a failure is reported and left (best effort).
    const forget = this.locks?.forgetSession?.bind(this.locks);
    await Promise.all([
      this.cacheInvalidate(tenant, id),
      forget
        ? afterCommit(async () => {
            try {
              await forget(tenant, id);
            } catch (err) {
              this.onCacheError(err);
            }
          })
        : undefined,
    ]);
  }

  protected async written(session: Session): Promise<Session> {
    await this.cacheSet(session);
    return withEffectiveStatus(session);
  }

  protected async cacheSet(session: Session, origin: CacheOrigin = 'write'): Promise<void> {
    const cache = this.cache;
    if (!cache) return;
    // Inside an idempotent call the write commits after this returns: caches hear of it then.
    await afterCommit(async () => {
      try {
        await cache.set(session, origin);
      } catch (err) {
        this.onCacheError(err);
      }
    });
  }

  protected async cacheInvalidate(tenant: string, id: string): Promise<void> {
    const cache = this.cache;
    if (!cache) return;
    await afterCommit(async () => {
      try {
        await cache.invalidate(sessionKey(tenant, id));
      } catch (err) {
        this.onCacheError(err);
      }
    });
  }

  protected checkId(id: string): void {
    if (!isSessionId(id)) {
      throw new ValidationError('a session id is 1 to 128 of the characters A-Z a-z 0-9 _ : - . (not starting with .)', {
        field: 'id',
      });
    }
  }

  private checkBatch(ids: readonly string[]): void {
    if (ids.length === 0) throw new ValidationError('name at least one id', { field: 'ids' });
    if (ids.length > this.limits.batchSize) {
      throw new LimitError(`at most ${this.limits.batchSize} ids per batch`, { limit: this.limits.batchSize });
    }
    for (const id of ids) this.checkId(id);
  }

  private checkText(field: string, value: string | null | undefined, max = this.limits.textLength): void {
    if (value !== null && value !== undefined && value.length > max) {
      throw new LimitError(`${field} is longer than ${max} characters`, { field, limit: max });
    }
  }

  private checkFields(input: CreateSessionInput | UpdateSessionInput): void {
    if (input.metadata !== undefined) {
      if (typeof input.metadata !== 'object' || input.metadata === null || Array.isArray(input.metadata)) {
        throw new ValidationError('metadata must be an object', { field: 'metadata' });
      }
      checkJsonValue(input.metadata, this.jsonShape, 'metadata');
      if (jsonBytes(input.metadata) > this.limits.metadataBytes) {
        throw new LimitError(`metadata exceeds ${this.limits.metadataBytes} bytes`, {
          field: 'metadata',
          limit: this.limits.metadataBytes,
        });
      }
    }
    for (const field of ['model', 'title', 'workspacePath'] as const) this.checkText(field, input[field]);
    if ('userId' in input) this.checkText('userId', input.userId);
    if ('orgId' in input) this.checkText('orgId', input.orgId);
    this.checkText('systemPrompt', input.systemPrompt, this.limits.systemPromptLength);
    if (input.mcpClientIds !== undefined) {
      if (input.mcpClientIds.length > 100) throw new LimitError('at most 100 mcp client ids', { field: 'mcpClientIds' });
      for (const c of input.mcpClientIds) this.checkText('mcpClientIds', c);
    }
    for (const field of ['ttlSeconds', 'idleTimeoutSeconds'] as const) {
      const v = (input as CreateSessionInput)[field];
      if (v !== undefined && v !== null && (!Number.isSafeInteger(v) || v < 1 || v > 2_147_483_647)) {
        throw new ValidationError(`${field} must be a positive integer`, { field });
      }
    }
  }

  /**
   * The write's guards. A fencing token older than the newest the lock store handed out is
   * refused here: with Redis leases the session row has not seen that token (no PostgreSQL
   * write per lease); the write statement refuses one older than the newest the row has seen.
   */
  private async guards(id: string, opts: WriteOptions): Promise<WriteGuards> {
    const guards = guardsOf(opts);
    const token = guards.fencingToken;
    if (token !== undefined && this.locks?.newestToken) {
      const newest = await this.locks.newestToken(tenantOf(opts), id);
      if (newest !== null && token < newest) {
        throw new ConflictError('stale_fencing_token', `fencing token ${token} is stale for session ${id}`);
      }
    }
    return guards;
  }

  private pageSize(limit: number | undefined): number {
    if (limit === undefined) return Math.min(this.limits.defaultPageSize, this.limits.maxPageSize);
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > this.limits.maxPageSize) {
      throw new ValidationError(`limit must be between 1 and ${this.limits.maxPageSize}`, { field: 'limit' });
    }
    return limit;
  }
}

export function tenantOf(opts: CallOptions): string {
  return opts.tenant ?? DEFAULT_TENANT;
}

function guardsOf(opts: WriteOptions): WriteGuards {
  const guards: WriteGuards = {};
  if (opts.expectedRevision !== undefined) guards.expectedRevision = opts.expectedRevision;
  if (opts.fencingToken !== undefined) guards.fencingToken = opts.fencingToken;
  return guards;
}
