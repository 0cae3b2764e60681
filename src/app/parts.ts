/** What a `Sessions` is made of (assembled in assemble.ts, reached through internal.ts). */
import type { ApiKeyService } from '../core/api-keys.js';
import type { Erasure } from '../core/erasure.js';
import type { EventFeed } from '../core/events.js';
import type { IdempotentCalls } from '../core/idempotency.js';
import type { OutboxRelay } from '../core/outbox-relay.js';
import type { CacheStats, StatsStore } from '../core/ports.js';
import type { ConnectionLimiter, RateLimiter } from '../core/rate-limit.js';
import type { RunExecutor } from '../core/run-executor.js';
import type { RunService } from '../core/run-service.js';
import type { RunWorkers } from '../core/run-workers.js';
import type { SessionService } from '../core/session-service.js';
import type { Mode } from '../core/stats.js';
import type { Sweeper } from '../core/sweeper.js';
import type { Tracing } from '../core/tracing.js';
import type { HealthCheck } from '../core/ports.js';
import type { SqlDatabase } from '../adapters/postgres/database.js';
import type { DirectoryLock } from '../adapters/postgres/directory-lock.js';
import type { GuardedRedis } from '../adapters/redis/guarded-redis.js';
import type { SessionsMetrics } from '../adapters/prometheus/metrics.js';
import type { Config } from './config.js';

/** Runs: the caller API and this instance's side of them. */
export interface RunParts {
  /** The library API (`sessions.runs`). */
  api: RunService;
  /** The runs this instance executes, its signals and its leases. */
  executor: RunExecutor;
  /** The agents this instance serves (claims of queued agent runs). */
  workers: RunWorkers;
  /** One pass of the orphan sweep now; resolves to the runs it ended. */
  sweepOrphans(limit?: number): Promise<number>;
  /** Runs executing or queued on this instance. */
  readonly localRunCount: number;
}

export interface SessionsParts {
  /** The configuration with its secrets redacted. */
  config: Readonly<Config>;
  mode: Mode;
  service: SessionService;
  runs: RunParts;
  events: EventFeed;
  /** Moves committed events to the broker; null without one. */
  relay: OutboxRelay | null;
  /** The broker's name, or null when events are served by the feed only. */
  publisherName: string | null;
  sweeper: Sweeper;
  /** The orphaned-run sweep, on its own shorter interval (RUN_SWEEP_INTERVAL_MS). */
  runSweeper: Sweeper;
  apiKeys: ApiKeyService;
  /** Erasure of a user or a tenant (sessions.admin, DELETE /v1/admin/users|tenants, `erase`). */
  erasure: Erasure;
  /** POSTs with an Idempotency-Key: executed once, their first 2xx answer replayed. */
  idempotency: IdempotentCalls;
  /** Requests per API key per window; null when rate limiting is off. */
  rateLimiter: RateLimiter | null;
  /** Wrong API keys per client address per window; null when off. */
  authFailureLimiter: RateLimiter | null;
  /** Open SSE connections per API key. */
  connectionLimiter: ConnectionLimiter;
  metrics: SessionsMetrics;
  stats: StatsStore;
  /** Hits, misses and size per cache tier of this instance. */
  cacheStats(): Record<string, CacheStats>;
  /** The database first: it alone decides readiness. */
  healthChecks: readonly HealthCheck[];
  /** The database handle (tests, doctor-like tools). */
  db: SqlDatabase;
  /** The embedded data directory's lock and control channel; null in memory and on PostgreSQL. */
  directoryLock: DirectoryLock | null;
  /** The Redis connection with its circuit breaker, when REDIS_URL is set. */
  redis: GuardedRedis | null;
  /** Where spans go (the HTTP server's too); NO_TRACING unless `tracing` was given. */
  tracing: Tracing;
  /** Starts the background work (relay, sweeps). */
  start(): Promise<void>;
  /** Stops everything and closes every connection, in order. */
  close(): Promise<void>;
}
