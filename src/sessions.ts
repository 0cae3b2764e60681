/**
 * The assembled service: one factory wires adapters from configuration into the object the
 * server and library users share.
 */
import path from 'node:path';
import type { Logger } from 'pino';
import { ApiKeyService } from './core/api-keys.js';
import { uuidv7 } from './core/ids.js';
import type {
  DependencyHealth,
  EventPublisher,
  HealthCheck,
  Lifecycle,
  SessionCache,
  SessionLockStore,
  SessionRef,
} from './core/ports.js';
import { SessionService } from './core/session-service.js';
import { EventFeed } from './core/events.js';
import { OutboxRelay, type RelayStats } from './core/outbox-relay.js';
import { orphanedRunsTask, sessionSweepTasks, Sweeper, type SweepTask, type SweepTaskStats } from './core/sweeper.js';
import { PostgresOutbox } from './adapters/postgres/outbox.js';
import { OutboxSignal, signallingDatabase } from './adapters/postgres/outbox-signal.js';
import { PostgresStatsStore, PostgresSweepStore } from './adapters/postgres/sweeps.js';
import { JetStreamEventPublisher } from './adapters/nats/jetstream-publisher.js';
import { DEFAULT_TENANT, type CallOptions } from './core/types.js';
import { throwIfAborted } from './core/abort.js';
import { LruSessionCache } from './adapters/memory/lru-session-cache.js';
import { PgDatabase, PgliteDatabase, type SqlDatabase } from './adapters/postgres/database.js';
import { migrate } from './adapters/postgres/migrator.js';
import { PostgresSessionRepository, type WriteNotification } from './adapters/postgres/session-repository.js';
import { PostgresApiKeyStore } from './adapters/postgres/api-key-repository.js';
import { loadConfig, type Config } from './config.js';
import { TieredSessionCache } from './adapters/cache/tiered-session-cache.js';
import { PostgresCacheRepairLog } from './adapters/postgres/cache-repair-log.js';
import { CACHE_INVALIDATION_CHANNEL, PgNotifyInvalidationBus } from './adapters/postgres/pg-invalidation-bus.js';
import { nextFence, PostgresSessionLockStore } from './adapters/postgres/session-locks.js';
import { BreakerOpenError } from './adapters/redis/circuit-breaker.js';
import { GuardedRedis } from './adapters/redis/guarded-redis.js';
import { RedisInvalidationBus } from './adapters/redis/redis-invalidation-bus.js';
import { RedisSessionCache, TOMBSTONE_VERSION } from './adapters/redis/redis-session-cache.js';
import { RedisSessionLockStore } from './adapters/redis/redis-lock-store.js';
import {
  InProcessConnectionLimiter,
  InProcessRateLimiter,
  type ConnectionLimiter,
  type RateLimiter,
} from './core/rate-limit.js';
import { RedisConnectionLimiter, RedisRateLimiter } from './adapters/redis/redis-limiters.js';
import { RunManager } from './core/run-manager.js';
import type { OutputLog, Runner, SignalBus } from './core/runs.js';
import { PostgresRunRepository } from './adapters/postgres/run-repository.js';
import { PgSignalBus } from './adapters/postgres/pg-signal-bus.js';
import { PgOutputLog } from './adapters/postgres/pg-output-log.js';
import { MemorySignalBus } from './adapters/memory/memory-signal-bus.js';
import { MemoryOutputLog } from './adapters/memory/memory-output-log.js';
import { RedisSignalBus } from './adapters/redis/redis-signal-bus.js';
import { RedisOutputLog } from './adapters/redis/redis-output-log.js';
import { demoRunner } from './runners/demo.js';
import { SessionsMetrics } from './metrics.js';
import { commandRunner } from './runners/command.js';

export type Mode = 'embedded' | 'distributed';

export interface HealthReport {
  ok: boolean;
  mode: Mode;
  instanceId: string;
  dependencies: DependencyHealth[];
}

export interface SessionsParts {
  config: Readonly<Config>;
  db: SqlDatabase;
  cache: SessionCache | null;
  logger?: Logger | undefined;
  /** Adapters started with the service and closed with it, in reverse order. */
  components?: Lifecycle[];
  /** Dependencies reported by /ready besides the database. */
  healthChecks?: HealthCheck[];
  /** Where withSessionLock takes leases (default: PostgreSQL). */
  locks?: SessionLockStore;
  redis?: GuardedRedis | null;
  /** The broker the outbox relay publishes to; without one, events are served by the feed only. */
  publisher?: EventPublisher | null;
  /** Sweep tasks besides the session sweeps (e.g. orphaned-run finalization). */
  sweepTasks?: SweepTask[];
  /** Per-key request limit; default in-process from config (null when RATE_LIMIT_PER_MINUTE is 0). */
  rateLimiter?: RateLimiter | null;
  /** Failed authentications per client address; null turns the limit off. */
  authFailureLimiter?: RateLimiter | null;
  /** Per-key SSE connection limit; default in-process from config. */
  connectionLimiter?: ConnectionLimiter;
  /** Cross-instance signals for runs (default: in-process). */
  signals?: SignalBus;
  /** Live output fan-out for runs (default: in-process). */
  output?: OutputLog;
  /** The runner the HTTP API starts (default: the demo agent). */
  agent?: Runner;
  /** Near-cache invalidations the session writes send themselves (PostgreSQL-only mode). */
  writeNotification?: WriteNotification | null;
}

export interface CacheTierStats {
  hits: number;
  misses: number;
  size: number;
  /** hits / (hits + misses); null before the first lookup. */
  hitRatio: number | null;
}

/** GET /v1/stats: counts for one tenant, plus this instance's caches, relay and sweeps. */
export interface ServiceStats {
  tenant: string;
  instanceId: string;
  sessions: { byStatus: Record<string, number>; total: number };
  runs: { active: number };
  outbox: {
    /** The broker events are relayed to; null: none configured (the feed is the only consumer). */
    publisher: string | null;
    /** Events not yet acknowledged by the broker; null without a broker. */
    backlog: number | null;
    oldestUnpublishedAgeSeconds: number | null;
    relay: RelayStats | null;
  };
  cache: Record<string, CacheTierStats>;
  sweeps: Record<string, SweepTaskStats>;
}

export class Sessions extends SessionService {
  readonly config: Readonly<Config>;
  readonly mode: Mode;
  readonly apiKeys: ApiKeyService;
  /** Requests per API key per window; null when rate limiting is off. */
  readonly rateLimiter: RateLimiter | null;
  /** Wrong API keys per client address per window (AUTH_FAILURES_PER_MINUTE); null when off. */
  readonly authFailureLimiter: RateLimiter | null;
  /** Open SSE connections per API key (see holdConnectionSlot in src/server/limits.ts). */
  readonly connectionLimiter: ConnectionLimiter;
  /** Runs: start, interrupt, input and resumable output streams (docs/runs.md). */
  readonly runs: RunManager;
  /**
   * The orphaned-run sweep, on its own shorter interval (RUN_SWEEP_INTERVAL_MS; 0 runs it
   * only through `runOnce`, for example when another scheduler runs `orphanedRunsTask`).
   */
  readonly runSweeper: Sweeper;
  /** @internal the database handle, for adapters that share it. */
  readonly db: SqlDatabase;
  /** @internal the Redis connection (with its circuit breaker), when REDIS_URL is set. */
  readonly redis: GuardedRedis | null;
  private readonly components: Lifecycle[];
  private readonly healthChecks: HealthCheck[];
  private closing: Promise<void> | null = null;
  /** The event feed: `sessions.events.subscribe({ after, types, sessionId, tenant, signal })`. */
  readonly events: EventFeed;
  /** Moves committed events to the broker; null without one. */
  readonly relay: OutboxRelay | null;
  /** Background sweeps; `sweeper.add(task)` plugs in more. */
  readonly sweeper: Sweeper;
  /**
   * Prometheus metrics of this instance (docs/observability.md). The server serves
   * `metrics.registry` at GET /metrics; a library user can mount it in their own server.
   */
  readonly metrics: SessionsMetrics;
  private readonly publisherName: string | null;
  private readonly statsStore: PostgresStatsStore;
  private starting: Promise<void> | null = null;
  private readonly outboxSignal: OutboxSignal;

  constructor(parts: SessionsParts) {
    const { config, cache, logger } = parts;
    // Every adapter writes through this handle, so each commit that inserted events wakes the
    // relay and the feed (see outbox-signal.ts); other instances hear of it by NOTIFY.
    const outboxSignal = new OutboxSignal(parts.db.kind === 'postgres' ? parts.db : null);
    const db = signallingDatabase(parts.db, outboxSignal);
    const metrics = new SessionsMetrics({ processMetrics: config.metricsEnabled, scrapeToken: config.metricsToken });
    super({
      repository: new PostgresSessionRepository(db, {
        metadataLimitBytes: config.limits.metadataBytes,
        notify: parts.writeNotification ?? null,
      }),
      cache,
      lifetimes: {
        ttlSeconds: config.sessionTtlSeconds,
        idleTimeoutSeconds: config.idleTimeoutSeconds,
        absoluteTimeoutSeconds: config.absoluteTimeoutSeconds,
      },
      limits: config.limits,
      onCacheError: (err) => logger?.warn({ err }, 'session cache unavailable'),
      locks: parts.locks ?? new PostgresSessionLockStore(db),
      telemetry: metrics,
    });
    this.metrics = metrics;
    // Only the key's hash is kept (in ApiKeyService); the config the service exposes never
    // holds the key itself.
    this.config = Object.freeze({
      ...config,
      adminApiKey: config.adminApiKey === null ? null : '[redacted]',
      metricsToken: config.metricsToken === null ? null : '[redacted]',
    });
    this.db = db;
    this.redis = parts.redis ?? null;
    this.mode = config.databaseUrl ? 'distributed' : 'embedded';
    this.apiKeys = new ApiKeyService(new PostgresApiKeyStore(db), { adminKey: config.adminApiKey, newId: uuidv7 });
    this.rateLimiter = parts.rateLimiter !== undefined ? parts.rateLimiter : perMinute(config.rateLimitPerMinute);
    this.authFailureLimiter =
      parts.authFailureLimiter !== undefined ? parts.authFailureLimiter : perMinute(config.authFailuresPerMinute);
    this.connectionLimiter = parts.connectionLimiter ?? new InProcessConnectionLimiter(config.limits.sseConnectionsPerKey);
    this.runs = new RunManager({
      repository: new PostgresRunRepository(db),
      bus: parts.signals ?? new MemorySignalBus(),
      live: parts.output ?? new MemoryOutputLog(),
      instanceId: config.instanceId,
      leaseMs: config.runLeaseMs,
      maxQueued: config.limits.runsQueuedPerSession,
      maxEventBytes: config.limits.outputEventBytes,
      maxInputBytes: config.limits.itemBytes,
      loadSession: (tenant, id) => this.find(id, { tenant }),
      onSessionWritten: (session) => this.cacheSet(session, 'unannounced-write'),
      logger,
      agent: parts.agent ?? demoRunner(),
      telemetry: metrics,
    });
    this.runSweeper = new Sweeper({
      intervalMs: config.runSweepIntervalMs,
      tasks: [orphanedRunsTask(this.runs)],
      onError: (err, task) => logger?.warn({ err, task }, 'sweep failed'),
    });
    // Closed in reverse: the runs, then the adapters they use (the sweepers stop before).
    this.components = [...(parts.components ?? []), this.runs];
    this.healthChecks = parts.healthChecks ?? [];

    this.outboxSignal = outboxSignal;
    const outbox = new PostgresOutbox(db, outboxSignal);
    this.events = new EventFeed(outbox, {
      pollIntervalMs: Math.min(config.outboxPollMs, 1_000),
      onError: (err) => logger?.warn({ err }, 'event feed: cannot read the outbox'),
    });
    const publisher = parts.publisher ?? null;
    this.publisherName = publisher?.name ?? null;
    this.relay = publisher
      ? new OutboxRelay({
          store: outbox,
          publisher,
          pollIntervalMs: config.outboxPollMs,
          maxBackoffMs: config.outboxMaxBackoffMs,
          onError: (err, failures) => {
            if (failures === 1 || failures % 20 === 0) logger?.warn({ err, failures }, 'outbox relay: publish failed, retrying');
          },
        })
      : null;
    this.sweeper = new Sweeper({
      intervalMs: config.sweepIntervalMs,
      tasks: [
        ...sessionSweepTasks(new PostgresSweepStore(db, parts.writeNotification ?? null), {
          warningLeadSeconds: config.timeoutWarningSeconds,
          retentionDays: config.retentionDays,
          outboxRetentionHours: config.outboxRetentionHours,
          pruneUnpublished: publisher === null,
          onSessionsChanged: (refs) => this.evictCached(refs),
        }),
        ...(parts.sweepTasks ?? []),
      ],
      onError: (err, task) => logger?.warn({ err, task }, 'sweep failed'),
    });
    this.statsStore = new PostgresStatsStore(db);
    const relay = this.relay;
    const statsStore = this.statsStore;
    metrics.attach({
      cacheStats: () => this.cacheStats(),
      fallbackStats: () => this.cache?.fallbackStats?.() ?? {},
      breaker: this.redis?.breaker ?? null,
      runs: () => this.runs.localRunCounts(),
      relay: relay ? () => relay.stats() : null,
      // Without a broker nothing is ever published: there is no lag to report.
      outboxLag: relay ? () => statsStore.outboxLag() : null,
      sweeps: () => ({ ...this.sweeper.stats(), ...this.runSweeper.stats() }),
    });
  }

  /** Starts the background work (relay, sweeps). Idempotent; createSessions calls it. */
  start(): Promise<void> {
    this.starting ??= (async () => {
      await this.relay?.start();
      this.sweeper.start();
      this.runSweeper.start();
    })();
    return this.starting;
  }

  /** Sessions the sweeps ended or removed must not be served from a cache. */
  private async evictCached(refs: SessionRef[]): Promise<void> {
    await Promise.all(refs.map((r) => this.cacheInvalidate(r.id)));
  }

  async stats(opts: CallOptions = {}): Promise<ServiceStats> {
    throwIfAborted(opts.signal);
    const tenant = opts.tenant ?? DEFAULT_TENANT;
    const t = await this.statsStore.tenantStats(tenant);
    const cache = Object.fromEntries(
      Object.entries(this.cacheStats()).map(([tier, c]) => [
        tier,
        { ...c, hitRatio: c.hits + c.misses === 0 ? null : c.hits / (c.hits + c.misses) },
      ]),
    );
    return {
      tenant,
      instanceId: this.config.instanceId,
      sessions: { byStatus: t.sessionsByStatus, total: Object.values(t.sessionsByStatus).reduce((a, b) => a + b, 0) },
      runs: { active: t.activeRuns },
      outbox: {
        publisher: this.publisherName,
        backlog: this.publisherName ? t.outboxBacklog : null,
        oldestUnpublishedAgeSeconds: this.publisherName ? t.oldestUnpublishedAgeSeconds : null,
        relay: this.relay?.stats() ?? null,
      },
      cache,
      sweeps: { ...this.sweeper.stats(), ...this.runSweeper.stats() },
    };
  }

  cacheStats(): Record<string, { hits: number; misses: number; size: number }> {
    if (this.cache?.statsByTier) return this.cache.statsByTier();
    return this.cache ? { [this.cache.tier]: this.cache.stats() } : {};
  }

  /**
   * Each dependency's status and latency. Only the database decides readiness: the others
   * (Redis, NATS) degrade performance or delay events when they are down, they stop nothing.
   */
  async health(): Promise<HealthReport> {
    const started = performance.now();
    let db: DependencyHealth;
    try {
      await this.db.query('SELECT 1');
      db = { name: this.db.kind, ok: true, latencyMs: performance.now() - started };
    } catch (err) {
      db = { name: this.db.kind, ok: false, latencyMs: performance.now() - started, error: (err as Error).message };
    }
    const others = await Promise.all(this.healthChecks.map((h) => h.check()));
    return { ok: db.ok, mode: this.mode, instanceId: this.config.instanceId, dependencies: [db, ...others] };
  }

  /** Stops every component and closes every connection. Idempotent; concurrent calls share one close. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await Promise.all([this.events.close(), this.relay?.close(), this.sweeper.close(), this.runSweeper.close()]);
      this.outboxSignal.close();
      for (const c of [...this.components].reverse()) await c.close().catch(() => undefined);
      await this.db.close();
    })();
    return this.closing;
  }
}

export interface CreateSessionsOptions extends Partial<Config> {
  logger?: Logger;
  /** Environment to read configuration from (default process.env). */
  env?: Record<string, string | undefined>;
  /** Apply pending migrations at start (default true). */
  migrate?: boolean;
  /** The runner the HTTP API starts (default: AGENT_COMMAND's command runner, else the demo agent). */
  agent?: Runner;
}

export function openDatabase(
  config: Pick<Config, 'databaseUrl' | 'dataDir' | 'instanceId'> &
    Partial<Pick<Config, 'databasePoolMax' | 'databasePreparedStatements'>>,
): SqlDatabase {
  return config.databaseUrl
    ? new PgDatabase({
        connectionString: config.databaseUrl,
        applicationName: `agent-sessions ${config.instanceId}`,
        max: config.databasePoolMax,
        preparedStatements: config.databasePreparedStatements,
      })
    : new PgliteDatabase({ dataDir: config.dataDir === ':memory:' ? undefined : path.resolve(config.dataDir, 'pgdata') });
}

/** Builds a ready `Sessions` from configuration: opens the database and migrates it. */
export async function createSessions(options: CreateSessionsOptions = {}): Promise<Sessions> {
  const { logger, env, migrate: shouldMigrate = true, agent, ...overrides } = options;
  const config = loadConfig(env ?? process.env, overrides);
  const db = openDatabase(config);
  try {
    await db.ready();
    await checkServerVersion(db);
    if (shouldMigrate) {
      const result = await migrate(db);
      if (result.applied.length > 0) logger?.info({ applied: result.applied }, 'database migrated');
    }
  } catch (err) {
    await db.close();
    throw err;
  }
  const redis = config.redisUrl
    ? new GuardedRedis({
        url: config.redisUrl,
        cluster: config.redisCluster,
        keyPrefix: config.keyPrefix,
        commandTimeoutMs: config.redisCommandTimeoutMs,
        onStateChange: (state, cause) =>
          logger?.[state === 'closed' ? 'info' : 'warn']({ err: cause, breaker: state }, `redis circuit ${state}`),
      })
    : null;
  const parts = distributedParts(config, db, redis, logger);
  let rateLimiter: RateLimiter | null = null;
  let authFailureLimiter: RateLimiter | null = null;
  let connectionLimiter: ConnectionLimiter | undefined;
  if (redis) {
    // Limits shared by every instance; while Redis is unreachable each instance counts alone.
    const options = {
      onError: (err: unknown) => logger?.warn({ err }, 'redis limiter unavailable; limiting per instance'),
      timeoutMs: config.limiterRedisTimeoutMs,
    };
    const shared = (limit: number) => (limit > 0 ? new RedisRateLimiter(redis.connection, redis.keys, limit, 60_000, options) : null);
    rateLimiter = shared(config.rateLimitPerMinute);
    authFailureLimiter = shared(config.authFailuresPerMinute);
    connectionLimiter = new RedisConnectionLimiter(redis.connection, redis.keys, config.limits.sseConnectionsPerKey, 30_000, options);
  }
  const run = runParts(config, db, redis, logger);
  const publisher = config.natsUrl
    ? new JetStreamEventPublisher({
        url: config.natsUrl,
        stream: config.natsStream,
        subjectPrefix: config.natsSubjectPrefix,
        name: `agent-sessions ${config.instanceId}`,
        onError: (err) => logger?.warn({ err }, 'NATS unavailable'),
      })
    : null;
  const components: Lifecycle[] = [];
  try {
    for (const c of [...parts.components, run.signals, run.output, ...(publisher ? [publisher] : [])]) {
      // Registered before ready(): a component whose start fails may already hold connections.
      components.push(c);
      await c.ready();
    }
    const sessions = new Sessions({
      config,
      db,
      logger,
      redis,
      cache: parts.cache,
      locks: parts.locks,
      writeNotification: parts.writeNotification ?? null,
      publisher,
      components,
      healthChecks: [...parts.healthChecks, ...(publisher ? [publisher] : [])],
      ...(redis ? { rateLimiter, authFailureLimiter, connectionLimiter } : {}),
      signals: run.signals,
      output: run.output,
      agent: agent ?? run.agent,
    });
    await sessions.runs.ready();
    await sessions.start();
    return sessions;
  } catch (err) {
    for (const c of components.reverse()) await c.close().catch(() => undefined);
    await db.close();
    throw err;
  }
}

/** An in-process limit of `limit` per minute, or none when it is 0. */
function perMinute(limit: number): RateLimiter | null {
  return limit > 0 ? new InProcessRateLimiter(limit) : null;
}

/**
 * Run signals and live output for the mode (Redis when configured, else LISTEN/NOTIFY, else
 * in-process), and the agent the HTTP API runs (AGENT_COMMAND, else the demo agent).
 */
function runParts(
  config: Readonly<Config>,
  db: SqlDatabase,
  redis: GuardedRedis | null,
  logger: Logger | undefined,
): { signals: SignalBus; output: OutputLog; agent: Runner } {
  const agent = config.agentCommand
    ? commandRunner({
        command: config.agentCommand,
        interruptGraceMs: config.agentInterruptGraceMs,
        killGraceMs: config.agentKillGraceMs,
      })
    : demoRunner();
  const onError = (what: string) => (err: unknown) => {
    if (!(err instanceof BreakerOpenError)) logger?.warn({ err }, what);
  };
  if (redis) {
    return {
      signals: new RedisSignalBus(redis, onError('redis run signals failed')),
      output: new RedisOutputLog(redis, { onError: onError('redis output reader failed') }),
      agent,
    };
  }
  if (config.databaseUrl) return { signals: new PgSignalBus(db), output: new PgOutputLog(db), agent };
  return { signals: new MemorySignalBus(), output: new MemoryOutputLog(), agent };
}

/**
 * The cache, lock store and their components for the mode. Embedded: an in-process cache
 * (this process is the only writer). Distributed: a near cache kept coherent across
 * instances, in front of Redis when REDIS_URL is set, over LISTEN/NOTIFY when it is not.
 */
function distributedParts(
  config: Readonly<Config>,
  db: SqlDatabase,
  redis: GuardedRedis | null,
  logger: Logger | undefined,
): {
  cache: SessionCache | null;
  locks: SessionLockStore;
  components: Lifecycle[];
  healthChecks: HealthCheck[];
  writeNotification?: WriteNotification;
} {
  const pgLocks = new PostgresSessionLockStore(db);
  const near =
    config.cacheMaxEntries > 0
      ? new LruSessionCache({
          maxEntries: config.cacheMaxEntries,
          ttlMs: config.cacheTtlMs,
          tier: config.databaseUrl ? 'near' : 'memory',
        })
      : null;
  if (!config.databaseUrl) return { cache: near, locks: pgLocks, components: [], healthChecks: [] };
  // A fast-failing Redis (circuit open) is expected during an outage; one log line per
  // breaker change says so, not one per call.
  const onError = (err: unknown, what: string) => {
    if (!(err instanceof BreakerOpenError)) logger?.warn({ err }, `${what} failed`);
  };
  if (!redis) {
    if (!near) return { cache: null, locks: pgLocks, components: [], healthChecks: [] };
    // Each write statement notifies as it commits: no separate NOTIFY that could fail after it.
    const bus = new PgNotifyInvalidationBus(db, { sentByWrites: true });
    const cache = new TieredSessionCache({ near, bus, onError });
    const writeNotification = { channel: CACHE_INVALIDATION_CHANNEL, deletedVersion: TOMBSTONE_VERSION };
    return { cache, locks: pgLocks, components: [cache], healthChecks: [], writeNotification };
  }
  const redisCache = new RedisSessionCache({ redis, ttlMs: config.redisCacheTtlSeconds * 1000 });
  const cache = new TieredSessionCache({
    near,
    redis: { cache: redisCache, guard: redis, repairs: new PostgresCacheRepairLog(db) },
    bus: new RedisInvalidationBus(redis.subscriber, redisCache.channel),
    onError,
  });
  const locks = new RedisSessionLockStore({
    redis,
    nextFence: (tenant, id) => nextFence(db, tenant, id),
    fallback: pgLocks,
  });
  return { cache, locks, components: [redis, cache], healthChecks: [redis.healthCheck()] };

}

/** Oldest PostgreSQL the SQL is written for (gen_random_uuid in core, jsonb, FOR UPDATE in CTEs). */
export const MIN_POSTGRES_VERSION = 130_000;

/** Refuses to start on a PostgreSQL too old for our SQL, with a message that says so. */
export async function checkServerVersion(db: Pick<SqlDatabase, 'query'>): Promise<void> {
  const [row] = await db.query<{ v: string }>(`SELECT current_setting('server_version_num') AS v`);
  const version = Number(row?.v ?? 0);
  if (version < MIN_POSTGRES_VERSION) {
    throw new Error(
      `PostgreSQL ${Math.floor(version / 10_000)} is too old: agent-sessions needs ${MIN_POSTGRES_VERSION / 10_000} or newer`,
    );
  }
}
