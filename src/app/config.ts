/**
 * Configuration from the environment (and a .env file) and from library options, validated
 * once at start by the same rules and frozen. Every variable is documented in .env.example;
 * `CONFIG_VARIABLES` lists them for tools and tests.
 */
import { isIP } from 'node:net';
import { DEFAULT_LIMITS, PAGE_SIZE_CEILING, type Limits } from '../core/limits.js';

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
  /** A pooled PostgreSQL connection unused this long is closed (0: kept open). */
  databasePoolIdleMs: number;
  /** Named prepared statements on PostgreSQL (off behind PgBouncer in transaction mode < 1.21). */
  databasePreparedStatements: boolean;
  redisUrl: string | null;
  /** Treat REDIS_URL as Cluster seed nodes (also implied by several comma-separated URLs). */
  redisCluster: boolean;
  /** Lifetime of an unread session snapshot in Redis; reads slide it. */
  redisCacheTtlSeconds: number;
  /**
   * The layout session snapshots are written in (snapshot-format.ts): 2, the array, or 1, the
   * object, which releases before layout 2 read (set during a rolling upgrade from them).
   */
  redisSnapshotLayout: number;
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
  /** The agent this instance serves (with AGENT_COMMAND or the demo agent) and the one a run without `agent` runs. */
  agentName: string;
  /** Whether this instance executes runs of AGENT_NAME (false: an API-only instance). */
  serveAgents: boolean;
  /** Runs of AGENT_NAME executing on this instance at once. */
  agentConcurrency: number;
  /** How often a worker looks for claimable runs without a wake-up. */
  runClaimIntervalMs: number;
  /** Longest a run may execute before it ends failed/run_max_ms; 0: no limit. */
  runMaxMs: number;
  /** Longest a run may emit nothing before it ends failed/run_idle_output; 0: no limit. */
  runIdleOutputMs: number;
  /** On SIGTERM (close), how long running runs may finish before they are handed back or ended. */
  drainTimeoutMs: number;
  /** Command runner: SIGINT → SIGTERM after this long, */
  agentInterruptGraceMs: number;
  /** then SIGTERM → SIGKILL after this long. */
  agentKillGraceMs: number;
  retentionDays: number;
  outboxRetentionHours: number;
  /** Hours after a run ended until its archived output is pruned (a session's latest run keeps its own); 0: kept as long as the session. */
  outputRetentionHours: number;
  /** With at least outputCommitSiblings runs on this instance, an output statement waits this long for more runs' events (0: never). */
  outputCommitDelayMs: number;
  outputCommitSiblings: number;
  adminApiKey: string | null;
  noAuth: boolean;
  logLevel: string;
  cacheMaxEntries: number;
  cacheTtlMs: number;
  /**
   * PostgreSQL-only mode with a near cache: how often each instance checks its near entries
   * against the committed versions (the bound for a write whose invalidation was never sent).
   */
  cacheRevalidateMs: number;
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
  /**
   * `serve` traces with OpenTelemetry: it loads `agent-sessions/opentelemetry` over the tracer
   * provider an SDK registered before it started (a library passes `tracing` instead).
   */
  otelTracing: boolean;
}

/** What a library caller may set: any field, and any subset of the limits. */
export type ConfigOverrides = Partial<Omit<Config, 'limits'>> & { limits?: Partial<Limits> };

export class ConfigError extends Error {
  override name = 'ConfigError';
  readonly code = 'invalid_config';
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
  }
}

type Env = Record<string, string | undefined>;

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
const MAX_SECONDS = 2_147_483_647;

/**
 * One setting: its variable, its default, how the variable's text becomes a value, and the
 * check every value passes, from the environment or from a library option alike. `check`
 * returns what is wrong (the variable's name is prefixed), or null.
 */
interface Setting {
  env: string;
  fallback: () => unknown;
  parse: (raw: string) => unknown;
  check: (value: unknown) => string | null;
  /** Turns an accepted value into the stored one (e.g. 0 seconds into null, "never"). */
  normalize?: (value: unknown) => unknown;
  /** The value may hold a secret (a URL with a password, a key): a message never repeats it. */
  secret?: boolean;
}

const got = (v: unknown) => `got ${typeof v === 'string' ? `"${v}"` : JSON.stringify(v)}`;

function int(env: string, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): Setting {
  return {
    env,
    fallback: () => fallback,
    parse: (raw) => (raw.trim() === '' ? Number.NaN : Number(raw)),
    check: (v) => (Number.isSafeInteger(v) && (v as number) >= min && (v as number) <= max ? null : `must be an integer from ${min} to ${max}, ${got(v)}`),
  };
}

/** A duration in seconds where 0 means "never" (stored as null). */
function seconds(env: string, fallback: number): Setting {
  const base = int(env, fallback, 0, MAX_SECONDS);
  return {
    ...base,
    fallback: () => (fallback === 0 ? null : fallback),
    check: (v) => (v === null ? null : base.check(v)),
    normalize: (v) => (v === 0 ? null : v),
  };
}

function bool(env: string, fallback: boolean): Setting {
  return {
    env,
    fallback: () => fallback,
    parse: (raw) => {
      const r = raw.toLowerCase();
      if (['1', 'true', 'yes'].includes(r)) return true;
      if (['0', 'false', 'no'].includes(r)) return false;
      return raw;
    },
    check: (v) => (typeof v === 'boolean' ? null : `must be true or false, ${got(v)}`),
  };
}

function text(env: string, fallback: string | null, rule?: { test: (s: string) => boolean; says: string }): Setting {
  return {
    env,
    fallback: () => fallback,
    parse: (raw) => raw,
    check: (v) => {
      if (v === null && fallback === null) return null;
      if (typeof v !== 'string' || v === '') return `must be a non-empty string, ${got(v)}`;
      return rule && !rule.test(v) ? rule.says : null;
    },
  };
}

function url(env: string, protocols: string[]): Setting {
  return secret(text(env, null, {
    test: (v) => {
      try {
        return protocols.includes(new URL(v).protocol);
      } catch {
        return false;
      }
    },
    says: `must be a URL using ${protocols.join(' or ')}`,
  }));
}

function secret(setting: Setting): Setting {
  return { ...setting, secret: true };
}

/** REDIS_URL: one URL, or several comma-separated (Cluster seed nodes), each checked. */
function redisUrls(env: string): Setting {
  return {
    ...text(env, null),
    secret: true,
    check: (v) => {
      if (v === null) return null;
      if (typeof v !== 'string' || v === '') return `must be a non-empty string, ${got(v)}`;
      for (const part of v.split(',').map((u) => u.trim())) {
        try {
          const u = new URL(part);
          if (!['redis:', 'rediss:'].includes(u.protocol)) return `must use redis: or rediss:, got "${u.protocol}"`;
        } catch {
          return 'is not a URL (or a comma-separated list of URLs)';
        }
      }
      return null;
    },
  };
}

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

const trustProxy: Setting = {
  env: 'TRUST_PROXY',
  fallback: () => false,
  parse: (raw) => {
    const v = raw.trim();
    if (v === 'true' || v === 'false') return v === 'true';
    if (/^\d+$/.test(v)) return Number(v);
    return v;
  },
  check: (v) => {
    if (typeof v === 'boolean') return null;
    if (typeof v === 'number') return Number.isSafeInteger(v) && v >= 0 ? null : 'must be a hop count of 0 or more';
    if (typeof v === 'string' && v.split(',').every((e) => isProxyAddress(e.trim()))) return null;
    return 'must be true, false, a hop count, or comma-separated addresses/CIDRs';
  },
  normalize: (v) => (typeof v === 'string' ? v.split(',').map((e) => e.trim()).join(',') : v),
};

type TopLevel = Exclude<keyof Config, 'limits'>;

const SETTINGS: Readonly<Record<TopLevel, Setting>> = {
  port: int('PORT', 8080, 0, 65535),
  host: text('HOST', '127.0.0.1'),
  trustProxy,
  dataDir: text('DATA_DIR', './.agent-sessions'),
  databaseUrl: url('DATABASE_URL', ['postgres:', 'postgresql:']),
  databasePoolMax: int('DATABASE_POOL_MAX', 20, 1, 1_000),
  // Node's timers take at most 2^31 - 1 ms (a larger one fires at once).
  databasePoolIdleMs: int('DATABASE_POOL_IDLE_MS', 60_000, 0, 2_147_483_647),
  databasePreparedStatements: bool('DATABASE_PREPARED_STATEMENTS', true),
  redisUrl: redisUrls('REDIS_URL'),
  redisCluster: bool('REDIS_CLUSTER', false),
  redisCacheTtlSeconds: int('REDIS_CACHE_TTL_SECONDS', 3_600, 1, 2_147_483),
  redisSnapshotLayout: int('REDIS_SNAPSHOT_LAYOUT', 2, 1, 2),
  redisCommandTimeoutMs: int('REDIS_COMMAND_TIMEOUT_MS', 1_000, 10, 60_000),
  natsUrl: url('NATS_URL', ['nats:', 'tls:']),
  keyPrefix: {
    ...text('KEY_PREFIX', 'as:'),
    check: (v) => (typeof v === 'string' && /^[\w:.-]{0,64}$/.test(v) ? null : 'may hold only letters, digits and _ : . - (at most 64)'),
  },
  sessionTtlSeconds: seconds('SESSION_TTL_SECONDS', 86_400),
  idleTimeoutSeconds: seconds('IDLE_TIMEOUT_SECONDS', 1_800),
  absoluteTimeoutSeconds: seconds('ABSOLUTE_TIMEOUT_SECONDS', 7 * 86_400),
  runLeaseMs: int('RUN_LEASE_MS', 10_000, 500),
  runSweepIntervalMs: int('RUN_SWEEP_INTERVAL_MS', 5_000, 0),
  sseHeartbeatMs: int('SSE_HEARTBEAT_MS', 15_000, 100),
  agentCommand: text('AGENT_COMMAND', null),
  agentName: text('AGENT_NAME', 'default', {
    test: (v) => /^[A-Za-z0-9][\w.:-]{0,63}$/.test(v),
    says: 'must be 1 to 64 letters, digits and _ . : - (starting with a letter or digit)',
  }),
  serveAgents: bool('SERVE_AGENTS', true),
  agentConcurrency: int('AGENT_CONCURRENCY', 16, 1, 100_000),
  runClaimIntervalMs: int('RUN_CLAIM_INTERVAL_MS', 1_000, 10),
  runMaxMs: int('RUN_MAX_MS', 0, 0),
  runIdleOutputMs: int('RUN_IDLE_OUTPUT_MS', 0, 0),
  drainTimeoutMs: int('DRAIN_TIMEOUT_MS', 10_000, 0),
  agentInterruptGraceMs: int('AGENT_INTERRUPT_GRACE_MS', 2_000, 0),
  agentKillGraceMs: int('AGENT_KILL_GRACE_MS', 5_000, 0),
  retentionDays: int('RETENTION_DAYS', 30, 0),
  outboxRetentionHours: int('OUTBOX_RETENTION_HOURS', 72, 0),
  outputRetentionHours: int('OUTPUT_RETENTION_HOURS', 0, 0),
  outputCommitDelayMs: int('OUTPUT_COMMIT_DELAY_MS', 2, 0, 1_000),
  outputCommitSiblings: int('OUTPUT_COMMIT_SIBLINGS', 32, 1),
  adminApiKey: secret(text('ADMIN_API_KEY', null, { test: (v) => v.length >= 16, says: 'must be at least 16 characters' })),
  noAuth: bool('NO_AUTH', false),
  logLevel: text('LOG_LEVEL', 'info', { test: (v) => LOG_LEVELS.includes(v), says: `must be one of ${LOG_LEVELS.join(', ')}` }),
  cacheMaxEntries: int('CACHE_MAX_ENTRIES', 10_000, 0),
  cacheTtlMs: int('CACHE_TTL_MS', 60_000, 0),
  cacheRevalidateMs: int('CACHE_REVALIDATE_MS', 5_000, 100, 3_600_000),
  bodyLimitBytes: int('BODY_LIMIT_BYTES', 1_048_576, 1_024),
  rateLimitPerMinute: int('RATE_LIMIT_PER_MINUTE', 6_000, 0),
  authFailuresPerMinute: int('AUTH_FAILURES_PER_MINUTE', 30, 0),
  limiterRedisTimeoutMs: int('LIMITER_REDIS_TIMEOUT_MS', 250, 1, 60_000),
  instanceId: {
    // Any name, as before; only what would break a log line or a connection name is refused.
    ...text('INSTANCE_ID', null, { test: (v) => v.length <= 256 && ![...v].some((c) => c < ' ' || c === '\x7f'), says: 'must be at most 256 characters without control characters' }),
    fallback: () => `${process.pid}-${Math.random().toString(36).slice(2, 8)}`,
  },
  natsStream: text('NATS_STREAM', 'AGENT_SESSIONS', {
    test: (v) => /^[A-Za-z0-9_-]{1,64}$/.test(v),
    says: 'may hold only letters, digits, _ and - (1 to 64)',
  }),
  natsSubjectPrefix: text('NATS_SUBJECT_PREFIX', 'agent_sessions', {
    test: (v) => /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(v),
    says: 'must be dot-separated tokens of letters, digits, _ and -',
  }),
  outboxPollMs: int('OUTBOX_POLL_MS', 5_000, 50),
  outboxMaxBackoffMs: int('OUTBOX_MAX_BACKOFF_MS', 10_000, 100),
  sweepIntervalMs: int('SWEEP_INTERVAL_MS', 30_000, 0),
  timeoutWarningSeconds: int('TIMEOUT_WARNING_SECONDS', 300, 0),
  metricsEnabled: bool('METRICS_ENABLED', true),
  metricsToken: secret(
    text('METRICS_TOKEN', null, {
      test: (v) => /^[\x21-\x7e]{16,512}$/.test(v),
      says: 'must be 16 to 512 printable characters without spaces',
    }),
  ),
  otelTracing: bool('OTEL_TRACING', false),
};

/** The limits that have a variable; the others keep their defaults. */
const LIMIT_SETTINGS: Readonly<Partial<Record<keyof Limits, Setting>>> = {
  metadataBytes: int('METADATA_LIMIT_BYTES', DEFAULT_LIMITS.metadataBytes, 2),
  itemBytes: int('ITEM_LIMIT_BYTES', DEFAULT_LIMITS.itemBytes, 2),
  maxPageSize: int('MAX_PAGE_SIZE', DEFAULT_LIMITS.maxPageSize, 1, PAGE_SIZE_CEILING),
  outputEventBytes: int('OUTPUT_EVENT_LIMIT_BYTES', DEFAULT_LIMITS.outputEventBytes, 2),
  runsQueuedPerSession: int('RUNS_QUEUED_PER_SESSION', DEFAULT_LIMITS.runsQueuedPerSession, 0),
  sseConnectionsPerKey: int('SSE_CONNECTIONS_PER_KEY', DEFAULT_LIMITS.sseConnectionsPerKey, 1),
  // PostgreSQL's own JSON parser recurses: past a few thousand levels it fails with a stack error.
  jsonDepth: int('JSON_MAX_DEPTH', DEFAULT_LIMITS.jsonDepth, 1, 1_000),
  jsonNodes: int('JSON_MAX_NODES', DEFAULT_LIMITS.jsonNodes, 1),
};

/** Every environment variable the configuration reads (the same list .env.example documents). */
export const CONFIG_VARIABLES: readonly string[] = Object.freeze(
  [...Object.values(SETTINGS), ...Object.values(LIMIT_SETTINGS)].map((s) => (s as Setting).env),
);

/** A limit without a variable still has to be a positive integer when a caller sets it. */
const anyLimit = (name: string): Setting => int(`limits.${name}`, 1, 1);

/**
 * Reads the environment, applies `overrides` (library options), validates every value by
 * the same rules and returns the frozen result. Throws a `ConfigError` naming each problem.
 */
export function loadConfig(env: Env = process.env, overrides: ConfigOverrides = {}): Readonly<Config> {
  const problems: string[] = [];
  const resolve = (setting: Setting, override: unknown, hasOverride: boolean, label: string): unknown => {
    let value: unknown;
    let source: string;
    if (hasOverride) {
      value = override;
      source = label === setting.env ? label : `${label} (${setting.env})`;
    } else {
      const raw = env[setting.env];
      if (raw === undefined || raw === '') return setting.fallback();
      value = setting.parse(raw);
      source = setting.env;
      const problem = setting.check(value);
      if (problem !== null) {
        // The text as given helps unless it may hold a secret (a URL's password, a key).
        problems.push(`${source} ${setting.secret ? problem : problem.replace(/got .*$/, `got "${raw}"`)}`);
        return setting.fallback();
      }
      return setting.normalize ? setting.normalize(value) : value;
    }
    const problem = setting.check(value);
    if (problem !== null) {
      problems.push(`${source} ${problem}`);
      return setting.fallback();
    }
    return setting.normalize ? setting.normalize(value) : value;
  };

  const known = new Set<string>([...Object.keys(SETTINGS), 'limits']);
  for (const key of Object.keys(overrides)) {
    if (!known.has(key)) problems.push(`unknown configuration option ${key}`);
  }
  const config: Record<string, unknown> = {};
  for (const [key, setting] of Object.entries(SETTINGS) as Array<[TopLevel, Setting]>) {
    const has = Object.hasOwn(overrides, key) && overrides[key] !== undefined;
    config[key] = resolve(setting, overrides[key], has, key);
  }
  const limitOverrides = overrides.limits ?? {};
  for (const name of Object.keys(limitOverrides)) {
    if (!Object.hasOwn(DEFAULT_LIMITS, name)) problems.push(`unknown limit limits.${name}`);
  }
  const limits: Record<string, unknown> = { ...DEFAULT_LIMITS };
  for (const name of Object.keys(DEFAULT_LIMITS) as Array<keyof Limits>) {
    const has = Object.hasOwn(limitOverrides, name) && limitOverrides[name] !== undefined;
    const setting = LIMIT_SETTINGS[name] ?? (has ? anyLimit(name) : null);
    if (setting) limits[name] = resolve(setting, limitOverrides[name], has, `limits.${name}`);
  }
  config.limits = Object.freeze(limits);
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze(config as unknown as Config);
}
