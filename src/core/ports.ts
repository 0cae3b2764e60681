/**
 * The ports the core depends on. Adapters implement them and own their connections; the
 * core never sees a client library.
 */
import type {
  CounterName,
  CreateSessionInput,
  ListItemsQuery,
  ListSessionsFilter,
  NewItem,
  Page,
  Session,
  SessionItem,
  UpdateSessionInput,
} from './types.js';

export interface Lifecycle {
  ready(): Promise<void>;
  close(): Promise<void>;
}

export interface WriteGuards {
  expectedRevision?: number;
  fencingToken?: number;
}

/** Lifetimes a repository applies when it creates or extends a session. */
export interface SessionLifetimes {
  ttlSeconds: number | null;
  idleTimeoutSeconds: number | null;
  absoluteTimeoutSeconds: number | null;
}

export interface BatchDeleteResult {
  deleted: string[];
  notFound: string[];
}

/** What one erasure batch removed (counts of rows deleted). */
export interface ErasedBatch {
  /** The sessions deleted, in id order. */
  ids: string[];
  items: number;
  runs: number;
  outputEvents: number;
  outbox: number;
  /** Sessions of the batch with a run queued or running; the batch deleted nothing when > 0. */
  busy: number;
}

/** The source of truth. Every method commits before it resolves. */
export interface SessionRepository extends Lifecycle {
  create(tenant: string, id: string, input: CreateSessionInput, lifetimes: SessionLifetimes): Promise<Session>;
  get(tenant: string, id: string): Promise<Session | null>;
  getMany(tenant: string, ids: readonly string[]): Promise<Session[]>;
  list(tenant: string, filter: ListSessionsFilter & { limit: number }): Promise<Page<Session>>;
  update(tenant: string, id: string, patch: UpdateSessionInput, guards: WriteGuards): Promise<Session>;
  touch(tenant: string, id: string, guards: WriteGuards): Promise<Session>;
  incrementCounters(
    tenant: string,
    id: string,
    deltas: Partial<Record<CounterName, number>>,
    guards: WriteGuards,
  ): Promise<Session>;
  terminate(tenant: string, id: string, reason: string, guards: WriteGuards): Promise<Session>;
  purge(tenant: string, id: string): Promise<boolean>;
  terminateMany(tenant: string, ids: readonly string[], reason: string): Promise<BatchDeleteResult>;
  purgeMany(tenant: string, ids: readonly string[]): Promise<BatchDeleteResult>;
  /**
   * Erasure, one batch in one transaction: deletes up to `limit` sessions of the tenant (of
   * `userId`, or all of them when null) with everything under them, and the events that name
   * them or carry the user's sessions. Repeat until `ids` comes back empty.
   */
  eraseBatch(tenant: string, userId: string | null, limit: number): Promise<ErasedBatch>;
  /** How many of the sessions `eraseBatch` would take have a run queued or running. */
  eraseBusy(tenant: string, userId: string | null): Promise<number>;
  fork(tenant: string, sourceId: string, newId: string, overrides: CreateSessionInput, lifetimes: SessionLifetimes): Promise<Session>;

  appendItems(tenant: string, sessionId: string, items: ReadonlyArray<NewItem & { id: string }>, guards: WriteGuards): Promise<{ session: Session; items: SessionItem[] }>;
  listItems(tenant: string, sessionId: string, query: ListItemsQuery & { limit: number }): Promise<Page<SessionItem>>;
  popItem(tenant: string, sessionId: string, guards: WriteGuards): Promise<{ session: Session; item: SessionItem | null }>;
  clearItems(tenant: string, sessionId: string, guards: WriteGuards): Promise<{ session: Session; removed: number }>;
}

export interface CacheStats {
  hits: number;
  misses: number;
  size: number;
}

/**
 * Why a snapshot is being cached: `write` right after the repository committed it (other
 * instances must learn of it, and a tier that cannot take it must make sure it never serves
 * an older one); `unannounced-write`, the same for a write made outside the session
 * repository (e.g. a run's status change); `created`, the first version of a session the
 * repository just inserted (no cache holds an older one, so nothing needs to be told or kept
 * out, and the caller need not wait); `read` after a miss was filled from the repository
 * (nothing changed).
 */
export type CacheOrigin = 'write' | 'unannounced-write' | 'created' | 'read';

/**
 * A cache of session snapshots keyed by `sessionKey(tenant, id)` (core/ids.ts): ids are
 * unique per tenant only. Entries carry their version; `set` never replaces a newer version
 * with an older one.
 */
export interface SessionCache {
  readonly tier: string;
  get(id: string): Promise<Session | null>;
  /**
   * `get` of `sessionKey(tenant, id)` for a cache that finds it without building the key,
   * answered through `answer` (the session, or null for a miss), which runs in the callback
   * that has the answer: a near hit costs that one callback, with no further promise hop.
   * An id that is not a session id (`isSessionId`) is answered null without asking a shared
   * tier: `answer` refuses it.
   */
  getFor?<T>(tenant: string, id: string, answer: (session: Session | null) => T | PromiseLike<T>): Promise<T>;
  set(session: Session, origin?: CacheOrigin): Promise<void>;
  invalidate(id: string): Promise<void>;
  stats(): CacheStats;
  /** The cached sessions among `ids`, fetched together (absent ids are misses). */
  getMany?(ids: readonly string[]): Promise<Map<string, Session>>;
  /** Statistics per tier, for a cache made of several. */
  statsByTier?(): Record<string, CacheStats>;
  /**
   * Lookups this cache passed on to the repository because its shared tier missed
   * (`redis_miss`) or could not be asked (`redis_unavailable`: error, circuit open).
   */
  fallbackStats?(): Record<string, number>;
  /**
   * `version` of session `id` is committed (a lock's lease read it): from now on the near
   * cache answers nothing older, even before that write's invalidation arrives here.
   */
  noteCommitted?(id: string, version: number): void;
}

/** A lease on one session, held by one caller until released or lapsed. */
export interface SessionLease {
  /** Strictly increasing per session, across restarts of any lock service. */
  readonly fencingToken: number;
  /**
   * The session's version when the lease was taken, read from PostgreSQL in the statement
   * that bumped the fence: every write acknowledged before (by an earlier holder, on any
   * instance) is at most this version, whether or not its invalidation has arrived here.
   */
  readonly sessionVersion: number;
  /** Extends the lease; resolves to false when it was lost (expired and taken). */
  renew(ttlMs: number): Promise<boolean>;
  release(): Promise<void>;
}

/**
 * Mutual exclusion per session, for efficiency only: correctness comes from the fencing
 * token, which the repository checks on every write that carries it.
 */
export interface SessionLockStore {
  readonly kind: string;
  /** One attempt: a lease, or null while someone else holds it. */
  tryAcquire(tenant: string, sessionId: string, ttlMs: number): Promise<SessionLease | null>;
  /**
   * The newest token handed out for the session where the repository does not see it (null:
   * none known, or the store cannot be asked). A write carrying an older token is stale.
   */
  newestToken?(tenant: string, sessionId: string): Promise<number | null>;
  /**
   * The session's row was deleted (and the delete committed): drops what the store keeps for
   * it beyond its leases (the Redis lease counter). Never for a row that still exists.
   */
  forgetSession?(tenant: string, sessionId: string): Promise<void>;
}

/** A lease from a lease service that counts leases per session within a lock epoch. */
export interface CountedLease {
  /** The epoch the counter belongs to (installed by `LeaseCounterStore.installEpoch`). */
  readonly epoch: number;
  /** 1 for the first lease of the session in `epoch`, then +1 per lease. */
  readonly counter: number;
  renew(ttlMs: number): Promise<boolean>;
  release(): Promise<void>;
  /** Gives the lease back when its session does not exist, and forgets the counter if this was its first lease. */
  discard(): Promise<void>;
}

/** One attempt at a counted lease. */
export type CountedAcquire =
  | { outcome: 'taken'; lease: CountedLease }
  /** Someone else holds the lease. */
  | { outcome: 'held' }
  /** The service holds no epoch (it restarted, or its keys were cleared): nothing was taken. */
  | { outcome: 'no_epoch' }
  /** The service cannot be asked now (circuit open). */
  | { outcome: 'unavailable' };

/** Leases and per-session counters in a service that may restart empty (Redis). */
export interface LeaseCounterStore {
  tryAcquire(tenant: string, sessionId: string, ttlMs: number): Promise<CountedAcquire>;
  /** Installs `epoch` unless a newer one is installed; counters of older epochs start again. */
  installEpoch(epoch: number): Promise<void>;
  /** The session's last counter and its epoch (null: none, or the service cannot be asked). */
  lastCounter(tenant: string, sessionId: string): Promise<{ epoch: number; counter: number } | null>;
  /** Deletes the session's counter; rejects when the service cannot be asked. */
  forget(tenant: string, sessionId: string): Promise<void>;
}

/** The durable side of counted leases (PostgreSQL): the lock epoch and the session row. */
export interface LockEpochStore {
  /**
   * Read after the lease was taken: the session's committed version, the newest token its row
   * has seen, and the current epoch (null before the first). Null when the session is not found.
   */
  read(tenant: string, sessionId: string): Promise<{ version: number; fence: number; epoch: number | null } | null>;
  /** Moves the epoch up by one and to at least `atLeast`; resolves to the new epoch. */
  bump(atLeast: number): Promise<number>;
}

export interface DependencyHealth {
  name: string;
  ok: boolean;
  latencyMs: number;
  error?: string;
}

export interface HealthCheck {
  readonly name: string;
  check(): Promise<DependencyHealth>;
}

/** One event from the outbox (SPEC §8). `id` is the outbox id: unique, increasing per commit order of a session. */
export interface EventEnvelope {
  id: number;
  type: string;
  tenantId: string;
  sessionId: string | null;
  occurredAt: string;
  data: unknown;
}

export interface PublishOutcome {
  id: number;
  /** The broker already had this event (same id within its duplicate window) and dropped this copy. */
  duplicate: boolean;
}

/** A broker that takes events (NATS JetStream). `publish` resolves only once the broker stored it. */
export interface EventPublisher extends Lifecycle {
  readonly name: string;
  publish(event: EventEnvelope, opts?: { signal?: AbortSignal }): Promise<PublishOutcome>;
  /** Calls `listener` when the broker becomes reachable again, so a waiting relay retries at once. */
  onAvailable(listener: () => void): () => void;
}

/** The outbox as the relay sees it. */
export interface OutboxStore {
  /**
   * In one transaction: claims up to `limit` unpublished events in id order, skipping those
   * another relay holds and every event of a session another relay is publishing; hands them
   * to `publish`; marks the ids it returns as published. Nothing is marked if `publish` throws.
   */
  relay(limit: number, publish: (events: readonly EventEnvelope[]) => Promise<number[]>): Promise<{ claimed: number; published: number }>;
  /** Calls `listener` after a transaction that inserted events commits (any instance). */
  onAppend(listener: () => void): Promise<() => Promise<void>>;
}

export interface EventQuery {
  tenant: string;
  after: number;
  /** Inclusive upper bound; pass the horizon. */
  upTo: number;
  types?: readonly string[];
  sessionId?: string;
  limit: number;
}

export interface EventPage {
  events: EventEnvelope[];
  prunedThrough: number;
}

/** The outbox as the event feed sees it. */
export interface EventLog {
  /**
   * `horizon`: every event with an id up to it has committed or never will, so a reader that
   * delivers in id order up to the horizon can never skip one that commits later.
   * `latest`: the highest id handed out so far (committed or not).
   */
  horizon(): Promise<{ horizon: number; latest: number }>;
  /**
   * Events after `max(after, prunedThrough)`, with `prunedThrough`: the highest id of the
   * tenant's that the outbox retention deleted (0: none), read in the same snapshot.
   */
  read(query: EventQuery): Promise<EventPage>;
  onAppend(listener: () => void): Promise<() => Promise<void>>;
}

export interface SessionRef {
  id: string;
  tenantId: string;
}

/** The background sweeps' queries. Each claims its rows with SKIP LOCKED and commits its events with them. */
export interface SweepStore {
  /** Sets timeout_warned_at and emits session.timeout_warning for live sessions whose deadline is within `leadSeconds`. */
  warnExpiring(leadSeconds: number, limit: number): Promise<SessionRef[]>;
  /** Expires live sessions past their idle deadline or lifetime (warning first if none was sent). */
  expireDue(limit: number): Promise<SessionRef[]>;
  /** Deletes ended sessions (with items, runs and output) that ended more than `days` ago. */
  purgeEnded(days: number, limit: number): Promise<SessionRef[]>;
  /** Deletes published events older than `hours`; with `includeUnpublished`, unpublished ones too. */
  pruneOutbox(hours: number, includeUnpublished: boolean, limit: number): Promise<number>;
  /** Deletes the archived output of runs that ended more than `hours` ago, but not of a session's latest run; resolves to the runs pruned. */
  pruneOutput(hours: number, limit: number): Promise<number>;
}

export interface TenantStats {
  sessionsByStatus: Record<string, number>;
  activeRuns: number;
  outboxBacklog: number;
  /** Seconds since the oldest unpublished event was written; null when there is none. */
  oldestUnpublishedAgeSeconds: number | null;
}

export interface OutboxLag {
  /** Events not yet published, all tenants. */
  backlog: number;
  /** Seconds since the oldest of them was written; null when there is none. */
  oldestUnpublishedAgeSeconds: number | null;
}

export interface StatsStore {
  tenantStats(tenant: string): Promise<TenantStats>;
  outboxLag(): Promise<OutboxLag>;
}
