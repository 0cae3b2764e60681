/**
 * `Sessions`: the library API, one object over the parts `createSessions` assembles
 * (src/app/assemble.ts). Its public members are the library API and nothing else; the HTTP
 * server and the CLI reach the rest through src/app/internal.ts.
 */
import { throwIfAborted } from '../core/abort.js';
import type { ErasureResult } from '../core/erasure.js';
import type { EventFeed } from '../core/events.js';
import type { BatchDeleteResult } from '../core/ports.js';
import type { Runs } from '../core/runs.js';
import type { ModifyOptions, SessionLockContext, SessionLockOptions, SessionService } from '../core/session-service.js';
import { requestFingerprint } from '../core/idempotency.js';
import type { HealthReport, Mode, ServiceStats } from '../core/stats.js';
import type { Sweeper } from '../core/sweeper.js';
import {
  DEFAULT_TENANT,
  type CallOptions,
  type CounterName,
  type CreateSessionInput,
  type IdempotencyOptions,
  type ListSessionsFilter,
  type Page,
  type Session,
  type UpdateSessionInput,
  type WriteOptions,
} from '../core/types.js';
import type { Registry } from 'prom-client';
import type { SweepTask } from '../core/sweeper.js';
import type { Config } from './config.js';
import type { SessionsParts } from './parts.js';
import { registeredParts, registerParts } from './registry.js';

/** What library users see of the metrics (`sessions.metrics`): the registry to serve. */
export interface SessionsMetrics {
  /** This instance's prom-client registry (process metrics included unless METRICS_ENABLED=false). */
  readonly registry: Registry;
  /** The media type of `text()`: Prometheus text exposition format. */
  readonly contentType: string;
  /** Every metric in Prometheus text format. */
  text(): Promise<string>;
}

/** Conversation history (`sessions.items`); `append` takes an `idempotencyKey`. */
export type SessionItems = Omit<SessionService['items'], 'append'> & {
  append(
    sessionId: string,
    items: Parameters<SessionService['items']['append']>[1],
    opts?: WriteOptions & IdempotencyOptions,
  ): ReturnType<SessionService['items']['append']>;
};

declare const sessionsInit: unique symbol;
/** What `createSessions` hands the constructor; nothing else can make one. */
export interface SessionsInit {
  readonly [sessionsInit]: true;
}

/** Administration of stored data (`sessions.admin`). */
export interface SessionsAdmin {
  /**
   * Deletes every session of `userId` in `options.tenant` (default "default") with its items,
   * runs and output, the events that name them and every cached copy, in batches of one
   * transaction each. `session_busy` (409) while one of them has a run queued or running.
   */
  eraseUser(userId: string, options?: { tenant?: string; signal?: AbortSignal }): Promise<ErasureResult>;
  /** Deletes everything of a tenant, its API keys included; `tenant_not_found` when nothing names it. */
  eraseTenant(tenant: string, options?: { signal?: AbortSignal }): Promise<ErasureResult>;
}

export class Sessions {
  /** The configuration in effect, secrets redacted. */
  readonly config: Readonly<Config>;
  readonly mode: Mode;
  /** Conversation history of a session: append, list, pop, clear. */
  readonly items: SessionItems;
  /** Runs: start, interrupt, input and resumable output streams (docs/runs.md). */
  readonly runs: Runs;
  /** The event feed: `sessions.events.subscribe({ after, types, sessionId, tenant, signal })`. */
  readonly events: Pick<EventFeed, 'subscribe'>;
  /** Background sweeps; `sweeper.add(task)` plugs in more, `runOnce()` runs a pass now. */
  readonly sweeper: Pick<Sweeper, 'add' | 'runOnce' | 'stats'>;
  /** Prometheus metrics of this instance: serve `metrics.registry` in your own server (docs/observability.md). */
  readonly metrics: SessionsMetrics;
  /** Erasure of a user's or a tenant's data (docs/operations.md, "Erasure"). */
  readonly admin: SessionsAdmin;
  readonly #parts: SessionsParts;

  /** Made by `createSessions`. */
  constructor(init: SessionsInit) {
    const parts = init as unknown as SessionsParts;
    this.#parts = parts;
    this.config = parts.config;
    this.mode = parts.mode;
    const items = parts.service.items;
    this.items = {
      ...items,
      append: (sessionId, list, opts) => this.#once('items.append', [sessionId], { sessionId, items: list }, opts, () => items.append(sessionId, list, opts)),
    };
    this.runs = parts.runs.api;
    this.events = parts.events;
    this.sweeper = parts.sweeper;
    this.metrics = parts.metrics;
    this.admin = Object.freeze({
      eraseUser: (userId: string, options: { tenant?: string; signal?: AbortSignal } = {}) =>
        parts.erasure.eraseUser(options.tenant ?? DEFAULT_TENANT, userId, { signal: options.signal }),
      eraseTenant: (tenant: string, options: { signal?: AbortSignal } = {}) => parts.erasure.eraseTenant(tenant, options),
    });
    registerParts(this, parts);
  }

  /**
   * Runs `fn` once per tenant and `opts.idempotencyKey` (when given): a repeat resolves to the
   * first result, stored with the write in one transaction (core/idempotency.ts). A replay
   * first brings the caches of the sessions named in `ids` up to their rows.
   */
  async #once<T>(
    operation: string,
    ids: readonly string[],
    args: unknown,
    opts: (CallOptions & IdempotencyOptions & Partial<Pick<WriteOptions, 'expectedRevision' | 'fencingToken'>>) | undefined,
    fn: () => Promise<T>,
  ): Promise<T> {
    const key = opts?.idempotencyKey;
    if (key === undefined) return fn();
    const tenant = opts?.tenant ?? DEFAULT_TENANT;
    const fingerprint = requestFingerprint({
      library: operation,
      args,
      expectedRevision: opts?.expectedRevision,
      fencingToken: opts?.fencingToken,
    });
    const outcome = await this.#parts.idempotency.run(tenant, key, fingerprint, async () => ({ status: 200, headers: {}, body: await fn() }));
    if (outcome.replayed) await Promise.all(ids.map((id) => this.#parts.service.resync(id, { tenant })));
    return outcome.answer.body as T;
  }

  create(input?: CreateSessionInput, opts?: CallOptions & IdempotencyOptions): Promise<Session> {
    return this.#once('create', [], { input }, opts, () => this.#parts.service.create(input, opts));
  }

  /** Returns the session, or creates it with `input` when it does not exist. */
  getOrCreate(id: string, input?: Omit<CreateSessionInput, 'id'>, opts?: CallOptions): Promise<Session> {
    return this.#parts.service.getOrCreate(id, input, opts);
  }

  /** `getOrCreate` that says which it did. */
  ensure(id: string, input?: Omit<CreateSessionInput, 'id'>, opts?: CallOptions): Promise<{ session: Session; created: boolean }> {
    return this.#parts.service.ensure(id, input, opts);
  }

  get(id: string, opts?: CallOptions): Promise<Session> {
    return this.#parts.service.get(id, opts);
  }

  /** Like `get`, but resolves to null for a session that does not exist. */
  find(id: string, opts?: CallOptions): Promise<Session | null> {
    return this.#parts.service.find(id, opts);
  }

  exists(id: string, opts?: CallOptions): Promise<boolean> {
    return this.#parts.service.exists(id, opts);
  }

  /** The sessions among `ids` that exist, in the order asked. */
  getMany(ids: readonly string[], opts?: CallOptions): Promise<Session[]> {
    return this.#parts.service.getMany(ids, opts);
  }

  list(filter?: ListSessionsFilter, opts?: CallOptions): Promise<Page<Session>> {
    return this.#parts.service.list(filter, opts);
  }

  update(id: string, patch: UpdateSessionInput, opts?: WriteOptions): Promise<Session> {
    return this.#parts.service.update(id, patch, opts);
  }

  /** Read-modify-write, retried when another writer got there first (see SessionService.modify). */
  modify(id: string, change: (s: Session) => UpdateSessionInput, opts?: ModifyOptions): Promise<Session> {
    return this.#parts.service.modify(id, change, opts);
  }

  touch(id: string, opts?: WriteOptions & IdempotencyOptions): Promise<Session> {
    return this.#once('touch', [id], { id }, opts, () => this.#parts.service.touch(id, opts));
  }

  /** Atomic increments; with an `idempotencyKey`, a retried increment never counts twice. */
  incrementCounters(id: string, deltas: Partial<Record<CounterName, number>>, opts?: WriteOptions & IdempotencyOptions): Promise<Session> {
    return this.#once('incrementCounters', [id], { id, deltas }, opts, () => this.#parts.service.incrementCounters(id, deltas, opts));
  }

  terminate(id: string, reason?: string, opts?: WriteOptions): Promise<Session> {
    return this.#parts.service.terminate(id, reason, opts);
  }

  /** Deletes the session with its items, runs and output. Resolves to false if it did not exist. */
  purge(id: string, opts?: CallOptions): Promise<boolean> {
    return this.#parts.service.purge(id, opts);
  }

  deleteMany(
    ids: readonly string[],
    options?: { purge?: boolean; reason?: string },
    opts?: CallOptions & IdempotencyOptions,
  ): Promise<BatchDeleteResult> {
    return this.#once('deleteMany', ids, { ids, options }, opts, () => this.#parts.service.deleteMany(ids, options, opts));
  }

  /** A new session with `parentSessionId` = `id`, its settings and a copy of its items. */
  fork(id: string, overrides?: CreateSessionInput, opts?: CallOptions & IdempotencyOptions): Promise<Session> {
    return this.#once('fork', [], { id, overrides }, opts, () => this.#parts.service.fork(id, overrides, opts));
  }

  /** Runs `fn` holding a lease on the session, with a fencing token for its writes (docs/distributed.md). */
  withSessionLock<T>(id: string, fn: (lock: SessionLockContext) => Promise<T>, opts?: SessionLockOptions): Promise<T> {
    return this.#parts.service.withSessionLock(id, fn, opts);
  }

  /** Counts for one tenant, plus this instance's caches, relay and sweeps (GET /v1/stats). */
  async stats(opts: CallOptions = {}): Promise<ServiceStats> {
    throwIfAborted(opts.signal);
    const parts = this.#parts;
    const tenant = opts.tenant ?? DEFAULT_TENANT;
    const t = await parts.stats.tenantStats(tenant);
    const cache = Object.fromEntries(
      Object.entries(parts.cacheStats()).map(([tier, c]) => [tier, { ...c, hitRatio: c.hits + c.misses === 0 ? null : c.hits / (c.hits + c.misses) }]),
    );
    const published = parts.publisherName !== null;
    return {
      tenant,
      instanceId: parts.config.instanceId,
      sessions: { byStatus: t.sessionsByStatus, total: Object.values(t.sessionsByStatus).reduce((a, b) => a + b, 0) },
      runs: { active: t.activeRuns },
      outbox: {
        publisher: parts.publisherName,
        backlog: published ? t.outboxBacklog : null,
        oldestUnpublishedAgeSeconds: published ? t.oldestUnpublishedAgeSeconds : null,
        relay: parts.relay?.stats() ?? null,
      },
      cache,
      sweeps: { ...parts.sweeper.stats(), ...parts.runSweeper.stats() },
    };
  }

  /**
   * Each dependency's status and latency. Only the database decides readiness: the others
   * (Redis, NATS) degrade performance or delay events when they are down, they stop nothing.
   */
  async health(): Promise<HealthReport> {
    const dependencies = await Promise.all(this.#parts.healthChecks.map((h) => h.check()));
    return { ok: dependencies[0]?.ok ?? false, mode: this.mode, instanceId: this.config.instanceId, dependencies };
  }

  /** Starts the background work (relay, sweeps). Idempotent; createSessions calls it. */
  start(): Promise<void> {
    return this.#parts.start();
  }

  /** Stops every component and closes every connection. Idempotent; concurrent calls share one close. */
  close(): Promise<void> {
    return this.#parts.close();
  }
}

/**
 * The finalization of orphaned runs (their owner stopped renewing the lease) as a sweep task,
 * for a scheduler of your own when RUN_SWEEP_INTERVAL_MS=0 turns this instance's timer off:
 * `sessions.sweeper.add(orphanedRunsTask(sessions))`, or call `run()` from a cron job. Safe on
 * every instance at once.
 */
export function orphanedRunsTask(sessions: Sessions): SweepTask {
  const parts = registeredParts(sessions) as SessionsParts;
  return { name: 'finalize_orphaned_runs', run: () => parts.runs.sweepOrphans() };
}
