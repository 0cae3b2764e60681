/**
 * The composition root: the only place adapters are built from configuration. `createSessions`
 * opens the database (PGlite or PostgreSQL), Redis and NATS as configured, wires them into
 * the core's services and hands the parts to the `Sessions` facade.
 */
import path from 'node:path';
import { ApiKeyService } from '../core/api-keys.js';
import { UnavailableError } from '../core/errors.js';
import { CoherentSessionCache } from '../core/cache-coherence.js';
import { EventFeed } from '../core/events.js';
import { EpochFencedLockStore } from '../core/fencing.js';
import { uuidv7 } from '../core/ids.js';
import { InProcessOutputLog } from '../core/in-process-output-log.js';
import type { Logger } from '../core/logger.js';
import { finalizeOrphanedRuns, type OrphanSweepOptions } from '../core/orphan-sweep.js';
import { OutboxRelay } from '../core/outbox-relay.js';
import type { EventPublisher, HealthCheck, Lifecycle, SessionCache, SessionLockStore, SessionRef } from '../core/ports.js';
import {
  InProcessConnectionLimiter,
  InProcessRateLimiter,
  type ConnectionLimiter,
  type RateLimiter,
} from '../core/rate-limit.js';
import { RunExecutor } from '../core/run-executor.js';
import { RunService } from '../core/run-service.js';
import { RunWorkers } from '../core/run-workers.js';
import type { OutputLog, Runner, SignalBus } from '../core/runs.js';
import { SessionService } from '../core/session-service.js';
import type { Session } from '../core/types.js';
import { orphanedRunsTask, sessionSweepTasks, Sweeper } from '../core/sweeper.js';
import { NO_TRACING, type Tracing } from '../core/tracing.js';
import { LruSessionCache } from '../adapters/memory/lru-session-cache.js';
import { MemorySignalBus } from '../adapters/memory/memory-signal-bus.js';
import { JetStreamEventPublisher } from '../adapters/nats/jetstream-publisher.js';
import { PostgresApiKeyStore } from '../adapters/postgres/api-key-repository.js';
import { PostgresCacheRepairLog } from '../adapters/postgres/cache-repair-log.js';
import { databaseHealthCheck, PgDatabase, PgliteDatabase, type SqlDatabase } from '../adapters/postgres/database.js';
import { migrate } from '../adapters/postgres/migrator.js';
import { PostgresOutbox } from '../adapters/postgres/outbox.js';
import { OutboxSignal, signallingDatabase } from '../adapters/postgres/outbox-signal.js';
import { ambientDatabase } from '../adapters/postgres/ambient-transaction.js';
import { PostgresIdempotencyStore } from '../adapters/postgres/idempotency-store.js';
import { PgNotifyInvalidationBus } from '../adapters/postgres/pg-invalidation-bus.js';
import { PgOutputLog } from '../adapters/postgres/pg-output-log.js';
import { PgSignalBus } from '../adapters/postgres/pg-signal-bus.js';
import { PostgresRunRepository } from '../adapters/postgres/run-repository.js';
import { nextFence, PostgresLockEpochs, PostgresSessionLockStore } from '../adapters/postgres/session-locks.js';
import { PostgresSessionRepository } from '../adapters/postgres/session-repository.js';
import { run, statements } from '../adapters/postgres/sql.js';
import { PostgresStatsStore, PostgresSweepStore } from '../adapters/postgres/sweeps.js';
import { databaseServer, tracedDatabase } from '../adapters/postgres/traced-database.js';
import { SessionsMetrics } from '../adapters/prometheus/metrics.js';
import { BreakerOpenError } from '../adapters/redis/circuit-breaker.js';
import { GuardedRedis } from '../adapters/redis/guarded-redis.js';
import { RedisInvalidationBus } from '../adapters/redis/redis-invalidation-bus.js';
import { RedisConnectionLimiter, RedisRateLimiter } from '../adapters/redis/redis-limiters.js';
import { RedisLeaseCounters, RedisSessionLockStore } from '../adapters/redis/redis-lock-store.js';
import { Erasure } from '../core/erasure.js';
import { IdempotentCalls } from '../core/idempotency.js';
import { RedisOutputLog } from '../adapters/redis/redis-output-log.js';
import { RedisSessionCache } from '../adapters/redis/redis-session-cache.js';
import { RedisSignalBus } from '../adapters/redis/redis-signal-bus.js';
import { commandRunner } from '../runners/command.js';
import { demoRunner } from '../runners/demo.js';
import { loadConfig, type Config, type ConfigOverrides } from './config.js';
import type { SessionsParts } from './parts.js';
import { Sessions, type SessionsInit } from './sessions.js';

export interface CreateSessionsOptions extends ConfigOverrides {
  /** Where to log (pino or any logger with the same methods); default: nowhere. */
  logger?: Logger;
  /** Environment to read configuration from (default process.env). */
  env?: Record<string, string | undefined>;
  /** Apply pending migrations at start (default true). */
  migrate?: boolean;
  /**
   * The runner of AGENT_NAME this instance serves unless SERVE_AGENTS=false (default:
   * AGENT_COMMAND's command runner, else the demo agent).
   */
  agent?: Runner;
  /**
   * Where spans go: `openTelemetryTracing()` from `agent-sessions/opentelemetry`
   * (docs/observability.md). Default: no tracing, at no cost.
   */
  tracing?: Tracing;
}

/** Builds a ready `Sessions` from configuration: opens the database, migrates it, connects the rest. */
export async function createSessions(options: CreateSessionsOptions = {}): Promise<Sessions> {
  const { logger, env, migrate: shouldMigrate = true, agent, tracing = NO_TRACING, ...overrides } = options;
  const config = loadConfig(env ?? process.env, overrides);
  const opened = openDatabase(config);
  try {
    await opened.ready();
    await checkServerVersion(opened);
    if (shouldMigrate) {
      const result = await migrate(opened);
      if (result.applied.length > 0) logger?.info({ applied: result.applied }, 'database migrated');
    }
  } catch (err) {
    await opened.close();
    throw err;
  }
  if (config.otelTracing && !tracing.enabled) {
    logger?.warn({ setting: 'OTEL_TRACING' }, 'OTEL_TRACING is read by `agent-sessions serve`; a library passes tracing: openTelemetryTracing() to createSessions');
  }
  // Traced after the migrations: those run once, before any request.
  const db = tracing.enabled ? tracedDatabase(opened, tracing, config.databaseUrl ? databaseServer(config.databaseUrl) : null) : opened;
  const redis = config.redisUrl
    ? new GuardedRedis({
        url: config.redisUrl,
        cluster: config.redisCluster,
        keyPrefix: config.keyPrefix,
        commandTimeoutMs: config.redisCommandTimeoutMs,
        tracing,
        // An opening is worth a warning (the reason, not a stack: it is an outage, not a defect);
        // the steps back (recovering, draining, closed) are information.
        onStateChange: (state, cause) =>
          state === 'open'
            ? logger?.warn({ breaker: state, reason: (cause as Error | undefined)?.message }, 'redis circuit open')
            : logger?.[state === 'closed' ? 'info' : 'debug']({ breaker: state }, `redis circuit ${state}`),
      })
    : null;
  const publisher = config.natsUrl
    ? new JetStreamEventPublisher({
        url: config.natsUrl,
        stream: config.natsStream,
        subjectPrefix: config.natsSubjectPrefix,
        name: `agent-sessions ${config.instanceId}`,
        onError: (err) => logger?.warn({ err }, 'NATS unavailable'),
        tracing,
      })
    : null;
  const cacheParts = cacheAndLocks(config, db, redis, logger);
  const run = runParts(config, db, redis, logger);
  const components: Lifecycle[] = [];
  try {
    for (const c of [...cacheParts.components, run.signals, run.output, ...(publisher ? [publisher] : [])]) {
      // Registered before ready(): a component whose start fails may already hold connections.
      components.push(c);
      await c.ready();
    }
    const parts = wire({
      config,
      db,
      directoryLock: opened instanceof PgliteDatabase ? opened.directoryLock : null,
      redis,
      logger,
      publisher,
      tracing,
      components,
      healthChecks: [...cacheParts.healthChecks, ...(publisher ? [publisher] : [])],
      cache: cacheParts.cache,
      locks: cacheParts.locks,
      limiters: limiters(config, redis, logger),
      signals: run.signals,
      output: run.output,
      agent: agent ?? run.agent,
      faultAfterCommit: killAfterCommit(env ?? process.env),
    });
    await parts.runs.executor.ready();
    if (config.serveAgents) parts.runs.api.serve(config.agentName, agent ?? run.agent, { concurrency: config.agentConcurrency, takesInput: true });
    await parts.start();
    return new Sessions(parts as unknown as SessionsInit);
  } catch (err) {
    for (const c of components.reverse()) await c.close().catch(() => undefined);
    await db.close();
    throw err;
  }
}

interface WiringInput {
  config: Readonly<Config>;
  db: SqlDatabase;
  directoryLock: SessionsParts['directoryLock'];
  redis: GuardedRedis | null;
  logger: Logger | undefined;
  publisher: EventPublisher | null;
  tracing: Tracing;
  /** Adapters started before, closed after the services, in reverse order. */
  components: Lifecycle[];
  /** Dependencies reported by /ready besides the database. */
  healthChecks: HealthCheck[];
  cache: SessionCache | null;
  locks: SessionLockStore;
  limiters: Pick<SessionsParts, 'rateLimiter' | 'authFailureLimiter' | 'connectionLimiter'>;
  signals: SignalBus;
  output: OutputLog;
  agent: Runner;
  /** Test-only fault point of idempotent calls (see killAfterCommit). */
  faultAfterCommit?: () => void;
}

/**
 * Test-only fault point: with NODE_ENV=test and TEST_FAULT_KILL_AFTER_COMMIT=1 the process
 * SIGKILLs itself right after an idempotent call committed, before it answers, so a test can
 * show that a retry on another instance gets the committed answer. Never set in production.
 */
function killAfterCommit(env: Record<string, string | undefined>): (() => void) | undefined {
  if (env.NODE_ENV !== 'test' || env.TEST_FAULT_KILL_AFTER_COMMIT !== '1') return undefined;
  return () => process.kill(process.pid, 'SIGKILL');
}

/** The core's services over the adapters, and the order they start and stop in. */
function wire(input: WiringInput): SessionsParts {
  const { config, logger, publisher } = input;
  // Every adapter writes through this handle, so each commit that inserted events wakes the
  // relay and the feed (see outbox-signal.ts); other instances hear of it by NOTIFY.
  const outboxSignal = new OutboxSignal(input.db.kind === 'postgres' ? input.db : null);
  // Outermost: an idempotent call's transaction is joined by every statement issued inside it.
  const db = ambientDatabase(signallingDatabase(input.db, outboxSignal));
  const idempotency = new IdempotentCalls(new PostgresIdempotencyStore(db), {
    onEffectError: (err) => logger?.warn({ err }, 'an effect after an idempotent call failed'),
    afterCommit: input.faultAfterCommit,
  });
  const metrics = new SessionsMetrics({ processMetrics: config.metricsEnabled, scrapeToken: config.metricsToken });
  const cache = input.cache;
  const repository = new PostgresSessionRepository(db, { metadataLimitBytes: config.limits.metadataBytes });
  const service = new SessionService({
    repository,
    cache,
    lifetimes: {
      ttlSeconds: config.sessionTtlSeconds,
      idleTimeoutSeconds: config.idleTimeoutSeconds,
      absoluteTimeoutSeconds: config.absoluteTimeoutSeconds,
    },
    limits: config.limits,
    onCacheError: (err) => logger?.warn({ err }, 'session cache unavailable'),
    locks: input.locks,
    telemetry: metrics,
    tracing: input.tracing,
  });
  const runs = wireRuns(config, db, input, service, metrics);
  const apiKeys = new ApiKeyService(new PostgresApiKeyStore(db), { adminKey: config.adminApiKey, newId: uuidv7 });
  const runSweeper = new Sweeper({
    intervalMs: config.runSweepIntervalMs,
    tasks: [orphanedRunsTask(runs.orphans)],
    onError: (err, task) => logger?.warn({ err, task }, 'sweep failed'),
  });
  const outbox = new PostgresOutbox(db, outboxSignal);
  const events = new EventFeed(outbox, {
    pollIntervalMs: Math.min(config.outboxPollMs, 1_000),
    onError: (err) => logger?.warn({ err }, 'event feed: cannot read the outbox'),
  });
  const relay = publisher
    ? new OutboxRelay({
        store: outbox,
        publisher,
        pollIntervalMs: config.outboxPollMs,
        maxBackoffMs: config.outboxMaxBackoffMs,
        onError: (err, failures) => {
          if (failures === 1 || failures % 20 === 0) logger?.warn({ err, failures }, 'outbox relay: publish failed, retrying');
        },
        tracing: input.tracing,
      })
    : null;
  const evict = async (refs: SessionRef[]) => {
    await Promise.all(refs.map((r) => service.evictCache(r.tenantId, r.id)));
  };
  const evictDeleted = async (refs: SessionRef[]) => {
    await Promise.all(refs.map((r) => service.evictDeleted(r.tenantId, r.id)));
  };
  const sweeper = new Sweeper({
    intervalMs: config.sweepIntervalMs,
    tasks: sessionSweepTasks(new PostgresSweepStore(db), {
      warningLeadSeconds: config.timeoutWarningSeconds,
      retentionDays: config.retentionDays,
      outboxRetentionHours: config.outboxRetentionHours,
      outputRetentionHours: config.outputRetentionHours,
      pruneUnpublished: publisher === null,
      onSessionsChanged: evict,
      onSessionsDeleted: evictDeleted,
    }).concat(idempotency.sweepTask()),
    onError: (err, task) => logger?.warn({ err, task }, 'sweep failed'),
  });
  const stats = new PostgresStatsStore(db);
  const cacheStats = () => cache?.statsByTier?.() ?? (cache ? { [cache.tier]: cache.stats() } : {});
  metrics.attach({
    cacheStats,
    fallbackStats: () => cache?.fallbackStats?.() ?? {},
    breaker: input.redis?.breaker ?? null,
    runs: () => runs.parts.executor.localRunCounts(),
    relay: relay ? () => relay.stats() : null,
    // Without a broker nothing is ever published: there is no lag to report.
    outboxLag: relay ? () => stats.outboxLag() : null,
    sweeps: () => ({ ...sweeper.stats(), ...runSweeper.stats() }),
    writeGroups: () => {
      const { creates, increments } = repository.writeGroupStats();
      return { create: creates, increment: increments };
    },
  });

  // Closed in reverse: the runs, then the adapters they use (the sweepers stop before).
  const components = [...input.components, runs.parts.executor];
  let starting: Promise<void> | null = null;
  let closing: Promise<void> | null = null;
  return {
    // Only the key's hash is kept (in ApiKeyService); the configuration shown never holds a secret.
    config: Object.freeze({
      ...config,
      adminApiKey: config.adminApiKey === null ? null : '[redacted]',
      metricsToken: config.metricsToken === null ? null : '[redacted]',
    }),
    mode: config.databaseUrl ? 'distributed' : 'embedded',
    service,
    runs: runs.parts,
    events,
    relay,
    publisherName: publisher?.name ?? null,
    sweeper,
    runSweeper,
    apiKeys,
    erasure: new Erasure({
      repository,
      apiKeys,
      evict: (tenant, id) => service.evictDeleted(tenant, id),
      output: input.output,
      idempotencyKeys: idempotency,
    }),
    idempotency,
    ...input.limiters,
    metrics,
    stats,
    cacheStats,
    healthChecks: [databaseHealthCheck(input.db), ...input.healthChecks],
    db,
    directoryLock: input.directoryLock,
    redis: input.redis,
    tracing: input.tracing,
    start() {
      starting ??= (async () => {
        await relay?.start();
        sweeper.start();
        runSweeper.start();
      })();
      return starting;
    },
    close() {
      closing ??= (async () => {
        // Stop claiming first: the executor then drains what runs here (DRAIN_TIMEOUT_MS).
        await runs.parts.workers.stop();
        await Promise.all([events.close(), relay?.close(), sweeper.close(), runSweeper.close()]);
        outboxSignal.close();
        for (const c of [...components].reverse()) await c.close().catch(() => undefined);
        await input.db.close();
      })();
      return closing;
    },
  };
}

/**
 * The runs of this instance: the caller API, the executor with its lease keeper, and the
 * orphan sweep's options (its task runs on the run sweeper).
 */
function wireRuns(
  config: Readonly<Config>,
  db: SqlDatabase,
  input: Pick<WiringInput, 'signals' | 'output' | 'logger' | 'tracing'>,
  service: SessionService,
  telemetry: SessionsMetrics,
): { parts: SessionsParts['runs']; orphans: OrphanSweepOptions } {
  const repository = new PostgresRunRepository(db);
  const onSessionWritten = (session: Session) => service.refreshCache(session, 'unannounced-write');
  // The executor wakes workers (a queue head left for them) through the workers, made after it.
  let workers: RunWorkers | null = null;
  const executor = new RunExecutor({
    repository,
    bus: input.signals,
    live: input.output,
    instanceId: config.instanceId,
    leaseMs: config.runLeaseMs,
    maxEventBytes: config.limits.outputEventBytes,
    jsonShape: { depth: config.limits.jsonDepth, nodes: config.limits.jsonNodes },
    loadSession: (tenant, id) => service.find(id, { tenant }),
    onSessionWritten,
    logger: input.logger,
    telemetry,
    tracing: input.tracing,
    runMaxMs: config.runMaxMs,
    runIdleOutputMs: config.runIdleOutputMs,
    drainTimeoutMs: config.drainTimeoutMs,
    outputCommitDelayMs: config.outputCommitDelayMs,
    outputCommitSiblings: config.outputCommitSiblings,
    wakeWorkers: (agent) => workers?.wake(agent),
  });
  workers = new RunWorkers({
    repository,
    executor,
    bus: input.signals,
    leaseMs: config.runLeaseMs,
    claimIntervalMs: config.runClaimIntervalMs,
    logger: input.logger,
  });
  const api = new RunService({
    repository,
    executor,
    live: input.output,
    leaseMs: config.runLeaseMs,
    maxQueued: config.limits.runsQueuedPerSession,
    maxInputBytes: config.limits.itemBytes,
    jsonShape: { depth: config.limits.jsonDepth, nodes: config.limits.jsonNodes },
    onSessionWritten,
    workers,
    defaultAgent: config.agentName,
    telemetry,
    tracing: input.tracing,
  });
  const orphans: OrphanSweepOptions = {
    repository,
    leaseMs: config.runLeaseMs,
    announce: (result) => executor.announce(result),
    telemetry,
    logger: input.logger,
  };
  return {
    parts: {
      api,
      executor,
      workers,
      sweepOrphans: (limit) => finalizeOrphanedRuns(orphans, limit),
      get localRunCount() {
        return executor.localRunCount;
      },
    },
    orphans,
  };
}

export function openDatabase(
  config: Pick<Config, 'databaseUrl' | 'dataDir' | 'instanceId'> &
    Partial<Pick<Config, 'databasePoolMax' | 'databasePoolIdleMs' | 'databasePreparedStatements'>>,
): SqlDatabase {
  return config.databaseUrl
    ? new PgDatabase({
        connectionString: config.databaseUrl,
        applicationName: `agent-sessions ${config.instanceId}`,
        max: config.databasePoolMax,
        idleTimeoutMillis: config.databasePoolIdleMs,
        preparedStatements: config.databasePreparedStatements,
      })
    : new PgliteDatabase({ dataDir: config.dataDir === ':memory:' ? undefined : path.resolve(config.dataDir, 'pgdata') });
}

/** Per-key request and SSE limits: shared through Redis when configured, else per instance. */
function limiters(
  config: Readonly<Config>,
  redis: GuardedRedis | null,
  logger: Logger | undefined,
): Pick<SessionsParts, 'rateLimiter' | 'authFailureLimiter' | 'connectionLimiter'> {
  if (!redis) {
    const perMinute = (limit: number) => (limit > 0 ? new InProcessRateLimiter(limit) : null);
    return {
      rateLimiter: perMinute(config.rateLimitPerMinute),
      authFailureLimiter: perMinute(config.authFailuresPerMinute),
      connectionLimiter: new InProcessConnectionLimiter(config.limits.sseConnectionsPerKey),
    };
  }
  // While Redis is unreachable each instance counts alone.
  const options = {
    onError: (err: unknown) => logger?.warn({ err }, 'redis limiter unavailable; limiting per instance'),
    timeoutMs: config.limiterRedisTimeoutMs,
  };
  const shared = (limit: number) => (limit > 0 ? new RedisRateLimiter(redis.connection, redis.keys, limit, 60_000, options) : null);
  const connectionLimiter: ConnectionLimiter = new RedisConnectionLimiter(
    redis.connection,
    redis.keys,
    config.limits.sseConnectionsPerKey,
    30_000,
    options,
  );
  const rateLimiter: RateLimiter | null = shared(config.rateLimitPerMinute);
  return { rateLimiter, authFailureLimiter: shared(config.authFailuresPerMinute), connectionLimiter };
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
  return { signals: new MemorySignalBus(), output: new InProcessOutputLog(), agent };
}

/**
 * The cache, lock store and their components for the mode. Embedded: an in-process cache
 * (this process is the only writer). Distributed: a near cache kept coherent across
 * instances, in front of Redis when REDIS_URL is set, over LISTEN/NOTIFY when it is not.
 */
function cacheAndLocks(
  config: Readonly<Config>,
  db: SqlDatabase,
  redis: GuardedRedis | null,
  logger: Logger | undefined,
): {
  cache: SessionCache | null;
  locks: SessionLockStore;
  components: Lifecycle[];
  healthChecks: HealthCheck[];
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
    // Writers notify after the commit, coalesced per instance (a NOTIFY inside every write
    // would serialize their commits); the periodic version check catches a write whose
    // notification was never sent.
    const bus = new PgNotifyInvalidationBus(db);
    const cache = new CoherentSessionCache({ near, bus, onError, revalidateMs: config.cacheRevalidateMs });
    return { cache, locks: pgLocks, components: [cache], healthChecks: [] };
  }
  const redisCache = new RedisSessionCache({
    redis,
    ttlMs: config.redisCacheTtlSeconds * 1000,
    snapshotLayout: config.redisSnapshotLayout === 1 ? 1 : 2,
  });
  const cache = new CoherentSessionCache({
    near,
    shared: { cache: redisCache, health: redis, repairs: new PostgresCacheRepairLog(db) },
    bus: new RedisInvalidationBus(redis.subscriber, redisCache.channel),
    onError,
  });
  // Standalone: tokens from Redis counters in a PostgreSQL epoch (no PostgreSQL write per
  // lease). Cluster: the epoch key cannot share a slot with every session, so the token is
  // PostgreSQL's sessions.fence as before.
  const locks = redis.cluster
    ? new RedisSessionLockStore({ redis, nextFence: (tenant, id) => nextFence(db, tenant, id), fallback: pgLocks })
    : new EpochFencedLockStore({
        counters: new RedisLeaseCounters(redis),
        epochs: new PostgresLockEpochs(db, redis.keyspace),
        fallback: new PostgresSessionLockStore(db, redis.keyspace),
      });
  return { cache, locks, components: [redis, cache], healthChecks: [redis.healthCheck()] };
}

/** Oldest PostgreSQL the SQL is written for (gen_random_uuid in core, jsonb, FOR UPDATE in CTEs). */
export const MIN_POSTGRES_VERSION = 130_000;

/** Refuses to start on a PostgreSQL too old for our SQL, with a message that says so. */
export async function checkServerVersion(db: Pick<SqlDatabase, 'query'>): Promise<void> {
  const [row] = await run<{ v: string }>(db, statements('serverVersion').serverVersion);
  const version = Number(row?.v ?? 0);
  if (version < MIN_POSTGRES_VERSION) {
    throw new Error(
      `PostgreSQL ${Math.floor(version / 10_000)} is too old: agent-sessions needs ${MIN_POSTGRES_VERSION / 10_000} or newer`,
    );
  }
}

/**
 * Deletes every key under KEY_PREFIX on REDIS_URL, e.g. after an import: what Redis holds is
 * cache (sessions, output, locks), and none of it may outlive the data it was copied from.
 * Resolves to the keys deleted; rejects when Redis cannot be reached.
 */
export async function clearSharedCache(
  config: Pick<Config, 'redisUrl' | 'redisCluster' | 'keyPrefix' | 'redisCommandTimeoutMs'>,
): Promise<number> {
  if (!config.redisUrl) return 0;
  const redis = new GuardedRedis({
    url: config.redisUrl,
    cluster: config.redisCluster,
    keyPrefix: config.keyPrefix,
    commandTimeoutMs: config.redisCommandTimeoutMs,
  });
  try {
    await redis.ready();
    if (!redis.breaker.isClosed) throw new UnavailableError('Redis (REDIS_URL) cannot be reached');
    return await redis.clearKeyspace();
  } finally {
    await redis.close();
  }
}
