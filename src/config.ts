/**
 * Configuration from the environment (and a .env file), validated once at start and frozen.
 * Every variable is documented in .env.example.
 */
import { isIP } from 'node:net';
import { DEFAULT_LIMITS, PAGE_SIZE_CEILING, type Limits } from './core/limits.js';

export interface Config {
  port: number;
  host: string;
  /**
   * Which proxies' X-Forwarded-For to believe for the client address (Fastify's trustProxy):
   * false (default: the socket's peer), true (any), a hop count, or addresses/CIDRs.
   */
  trustProxy: boolean | number | string;
  dataDir: string;
  databaseUrl: string | null;
  /** Connections per instance in the PostgreSQL pool. */
  databasePoolMax: number;
  /** Named prepared statements on PostgreSQL (off behind PgBouncer in transaction mode < 1.21). */
  databasePreparedStatements: boolean;
  redisUrl: string | null;
  /** Treat REDIS_URL as Cluster seed nodes (also implied by several comma-separated URLs). */
  redisCluster: boolean;
  /** Lifetime of an unread session snapshot in Redis; reads slide it. */
  redisCacheTtlSeconds: number;
  /** How long one Redis command may wait for its reply before it counts as a failure. */
  redisCommandTimeoutMs: number;
  natsUrl: string | null;
  keyPrefix: string;
  sessionTtlSeconds: number | null;
  idleTimeoutSeconds: number | null;
  absoluteTimeoutSeconds: number | null;
  runLeaseMs: number;
  /** How often this instance sweeps orphaned runs; 0 leaves it to another sweeper. */
  runSweepIntervalMs: number;
  /** SSE heartbeat comment interval. */
  sseHeartbeatMs: number;
  agentCommand: string | null;
  /** Command runner: SIGINT → SIGTERM after this long, */
  agentInterruptGraceMs: number;
  /** then SIGTERM → SIGKILL after this long. */
  agentKillGraceMs: number;
  retentionDays: number;
  outboxRetentionHours: number;
  adminApiKey: string | null;
  noAuth: boolean;
  logLevel: string;
  cacheMaxEntries: number;
  cacheTtlMs: number;
  bodyLimitBytes: number;
  /** Requests per API key per minute, shared by all instances through Redis; 0 = no limit. */
  rateLimitPerMinute: number;
  /** Wrong API keys one client address may present per minute before it is refused (0: off). */
  authFailuresPerMinute: number;
  /** Longest wait for Redis in a limit check before counting locally (fail open). */
  limiterRedisTimeoutMs: number;
  limits: Limits;
  instanceId: string;
  /** JetStream stream and subject prefix the relay publishes to (events: docs/events.md). */
  natsStream: string;
  natsSubjectPrefix: string;
  outboxPollMs: number;
  outboxMaxBackoffMs: number;
  sweepIntervalMs: number;
  timeoutWarningSeconds: number;
  /** Serve GET /metrics (Prometheus) and time every request for it. */
  metricsEnabled: boolean;
  /** A bearer token GET /metrics requires; null: the route is open, like /health. */
  metricsToken: string | null;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
  readonly code = 'invalid_config';
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
  }
}

type Env = Record<string, string | undefined>;

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

class Reader {
  readonly problems: string[] = [];
  constructor(private readonly env: Env) {}

  str(name: string, fallback: string): string {
    const v = this.env[name];
    return v === undefined || v === '' ? fallback : v;
  }

  optional(name: string): string | null {
    const v = this.env[name];
    return v === undefined || v === '' ? null : v;
  }

  int(name: string, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
    const raw = this.env[name];
    if (raw === undefined || raw === '') return fallback;
    const v = Number(raw);
    if (!Number.isSafeInteger(v) || v < min || v > max) {
      this.problems.push(`${name} must be an integer from ${min} to ${max}, got "${raw}"`);
      return fallback;
    }
    return v;
  }

  /** A duration in seconds where 0 means "never". */
  seconds(name: string, fallback: number): number | null {
    const v = this.int(name, fallback, 0, 2_147_483_647);
    return v === 0 ? null : v;
  }

  url(name: string, protocols: string[]): string | null {
    const raw = this.optional(name);
    if (raw === null) return null;
    try {
      const u = new URL(raw);
      if (!protocols.includes(u.protocol)) {
        this.problems.push(`${name} must use ${protocols.join(' or ')}, got "${u.protocol}"`);
      }
    } catch {
      this.problems.push(`${name} is not a URL`);
    }
    return raw;
  }

  bool(name: string, fallback: boolean): boolean {
    const raw = this.env[name];
    if (raw === undefined || raw === '') return fallback;
    if (['1', 'true', 'yes'].includes(raw.toLowerCase())) return true;
    if (['0', 'false', 'no'].includes(raw.toLowerCase())) return false;
    this.problems.push(`${name} must be true or false, got "${raw}"`);
    return fallback;
  }
}

/** REDIS_URL: one URL, or several comma-separated (Cluster seed nodes), each checked. */
/** An address, a CIDR, or one of proxy-addr's names for address ranges. */
function isProxyAddress(entry: string): boolean {
  if (['loopback', 'linklocal', 'uniquelocal'].includes(entry)) return true;
  const [address = '', bits, ...rest] = entry.split('/');
  const family = isIP(address);
  if (family === 0 || rest.length > 0) return false;
  if (bits === undefined) return true;
  const n = /^\d{1,3}$/.test(bits) ? Number(bits) : -1;
  return n >= 0 && n <= (family === 4 ? 32 : 128);
}

function trustProxy(r: Reader): boolean | number | string {
  const raw = r.str('TRUST_PROXY', 'false').trim();
  if (raw === 'true' || raw === 'false') return raw === 'true';
  if (/^\d+$/.test(raw)) return Number(raw);
  const entries = raw.split(',').map((e) => e.trim());
  if (entries.every(isProxyAddress)) return entries.join(',');
  r.problems.push('TRUST_PROXY must be true, false, a hop count, or comma-separated addresses/CIDRs');
  return false;
}

function redisUrls(r: Reader): string | null {
  const raw = r.optional('REDIS_URL');
  if (raw === null) return null;
  for (const part of raw.split(',').map((u) => u.trim())) {
    try {
      const u = new URL(part);
      if (!['redis:', 'rediss:'].includes(u.protocol)) r.problems.push(`REDIS_URL must use redis: or rediss:, got "${u.protocol}"`);
    } catch {
      r.problems.push(`REDIS_URL is not a URL (or a comma-separated list of URLs): "${part}"`);
    }
  }
  return raw;
}

export function loadConfig(env: Env = process.env, overrides: Partial<Config> = {}): Readonly<Config> {
  const r = new Reader(env);
  const logLevel = r.str('LOG_LEVEL', 'info');
  if (!LOG_LEVELS.includes(logLevel)) r.problems.push(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}`);
  const keyPrefix = r.str('KEY_PREFIX', 'as:');
  if (!/^[\w:.-]{0,64}$/.test(keyPrefix)) r.problems.push('KEY_PREFIX may hold only letters, digits and _ : . -');
  const adminApiKey = r.optional('ADMIN_API_KEY');
  if (adminApiKey !== null && adminApiKey.length < 16) r.problems.push('ADMIN_API_KEY must be at least 16 characters');
  const metricsToken = r.optional('METRICS_TOKEN');
  if (metricsToken !== null && !/^[\x21-\x7e]{16,512}$/.test(metricsToken)) {
    r.problems.push('METRICS_TOKEN must be 16 to 512 printable characters without spaces');
  }
  const config: Config = {
    port: r.int('PORT', 8080, 0, 65535),
    host: r.str('HOST', '127.0.0.1'),
    trustProxy: trustProxy(r),
    dataDir: r.str('DATA_DIR', './.agent-sessions'),
    databaseUrl: r.url('DATABASE_URL', ['postgres:', 'postgresql:']),
    databasePoolMax: r.int('DATABASE_POOL_MAX', 20, 1, 1_000),
    databasePreparedStatements: r.bool('DATABASE_PREPARED_STATEMENTS', true),
    redisUrl: redisUrls(r),
    redisCluster: r.bool('REDIS_CLUSTER', false),
    redisCacheTtlSeconds: r.int('REDIS_CACHE_TTL_SECONDS', 3_600, 1, 2_147_483),
    redisCommandTimeoutMs: r.int('REDIS_COMMAND_TIMEOUT_MS', 1_000, 10, 60_000),
    natsUrl: r.url('NATS_URL', ['nats:', 'tls:']),
    keyPrefix,
    sessionTtlSeconds: r.seconds('SESSION_TTL_SECONDS', 86_400),
    idleTimeoutSeconds: r.seconds('IDLE_TIMEOUT_SECONDS', 1_800),
    absoluteTimeoutSeconds: r.seconds('ABSOLUTE_TIMEOUT_SECONDS', 7 * 86_400),
    runLeaseMs: r.int('RUN_LEASE_MS', 10_000, 500),
    runSweepIntervalMs: r.int('RUN_SWEEP_INTERVAL_MS', 5_000, 0),
    sseHeartbeatMs: r.int('SSE_HEARTBEAT_MS', 15_000, 100),
    agentCommand: r.optional('AGENT_COMMAND'),
    agentInterruptGraceMs: r.int('AGENT_INTERRUPT_GRACE_MS', 2_000, 0),
    agentKillGraceMs: r.int('AGENT_KILL_GRACE_MS', 5_000, 0),
    retentionDays: r.int('RETENTION_DAYS', 30, 0),
    outboxRetentionHours: r.int('OUTBOX_RETENTION_HOURS', 72, 0),
    adminApiKey,
    noAuth: r.bool('NO_AUTH', false),
    logLevel,
    cacheMaxEntries: r.int('CACHE_MAX_ENTRIES', 10_000, 0),
    cacheTtlMs: r.int('CACHE_TTL_MS', 60_000, 0),
    bodyLimitBytes: r.int('BODY_LIMIT_BYTES', 1_048_576, 1_024),
    rateLimitPerMinute: r.int('RATE_LIMIT_PER_MINUTE', 6_000, 0),
    authFailuresPerMinute: r.int('AUTH_FAILURES_PER_MINUTE', 30, 0),
    limiterRedisTimeoutMs: r.int('LIMITER_REDIS_TIMEOUT_MS', 250, 1, 60_000),
    limits: {
      ...DEFAULT_LIMITS,
      metadataBytes: r.int('METADATA_LIMIT_BYTES', DEFAULT_LIMITS.metadataBytes, 2),
      itemBytes: r.int('ITEM_LIMIT_BYTES', DEFAULT_LIMITS.itemBytes, 2),
      maxPageSize: r.int('MAX_PAGE_SIZE', DEFAULT_LIMITS.maxPageSize, 1, PAGE_SIZE_CEILING),
      outputEventBytes: r.int('OUTPUT_EVENT_LIMIT_BYTES', DEFAULT_LIMITS.outputEventBytes, 2),
      runsQueuedPerSession: r.int('RUNS_QUEUED_PER_SESSION', DEFAULT_LIMITS.runsQueuedPerSession, 0),
      sseConnectionsPerKey: r.int('SSE_CONNECTIONS_PER_KEY', DEFAULT_LIMITS.sseConnectionsPerKey, 1),
    },
    instanceId: r.str('INSTANCE_ID', `${process.pid}-${Math.random().toString(36).slice(2, 8)}`),
    natsStream: r.str('NATS_STREAM', 'AGENT_SESSIONS'),
    natsSubjectPrefix: r.str('NATS_SUBJECT_PREFIX', 'agent_sessions'),
    outboxPollMs: r.int('OUTBOX_POLL_MS', 5_000, 50),
    outboxMaxBackoffMs: r.int('OUTBOX_MAX_BACKOFF_MS', 10_000, 100),
    sweepIntervalMs: r.int('SWEEP_INTERVAL_MS', 30_000, 0),
    timeoutWarningSeconds: r.int('TIMEOUT_WARNING_SECONDS', 300, 0),
    metricsEnabled: r.bool('METRICS_ENABLED', true),
    metricsToken,
    ...overrides,
  };
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(config.natsStream)) r.problems.push('NATS_STREAM may hold only letters, digits, _ and - (1 to 64)');
  if (!/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(config.natsSubjectPrefix)) {
    r.problems.push('NATS_SUBJECT_PREFIX must be dot-separated tokens of letters, digits, _ and -');
  }
  if (r.problems.length > 0) throw new ConfigError(r.problems);
  return Object.freeze(config);
}
