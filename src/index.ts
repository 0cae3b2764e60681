/**
 * The public library API of agent-sessions: `createSessions` and the `Sessions` it returns,
 * the model and error types, the runners, the HTTP server and the HTTP client. Nothing here
 * exposes a driver (pg, PGlite, node-redis, NATS).
 */
export { createSessions, type CreateSessionsOptions } from './app/assemble.js';
export { orphanedRunsTask, Sessions, type SessionItems, type SessionsAdmin, type SessionsMetrics } from './app/sessions.js';
export type { ErasureResult } from './core/erasure.js';
export { loadConfig, ConfigError, CONFIG_VARIABLES, type Config, type ConfigOverrides } from './app/config.js';
export { buildApp, type BuildAppOptions } from './server/app.js';
export type { Logger } from './core/logger.js';
/** The tracing port `createSessions({ tracing })` takes; `agent-sessions/opentelemetry` implements it. */
export type { OpenSpan, SpanAttributes, SpanHandle, SpanKind, SpanOptions, TraceCarrier, Tracing } from './core/tracing.js';
export type { CacheTierStats, HealthReport, Mode, ServiceStats } from './core/stats.js';
export type { DependencyHealth, BatchDeleteResult } from './core/ports.js';
export { EVENT_TYPES, type EventType, type SubscribeOptions } from './core/events.js';
export type { EventEnvelope } from './core/ports.js';
export type { RelayStats } from './core/outbox-relay.js';
export type { SweepTask, SweepTaskStats } from './core/sweeper.js';
export type { ModifyOptions, SessionLockContext, SessionLockOptions } from './core/session-service.js';
export {
  AgentSessionsError,
  CapacityError,
  ConflictError,
  LimitError,
  LockTimeoutError,
  NotFoundError,
  RunError,
  UnavailableError,
  ValidationError,
  isAgentSessionsError,
  type ErrorCode,
} from './core/errors.js';
export { DEFAULT_LIMITS, type Limits } from './core/limits.js';
export type { Principal, ApiKeyRecord } from './core/api-keys.js';
export {
  SCOPES,
  SESSION_STATUSES,
  canTransition,
  type CallOptions,
  type CounterName,
  type CreateSessionInput,
  type IdempotencyOptions,
  type ListItemsQuery,
  type ListSessionsFilter,
  type Metadata,
  type NewItem,
  type Page,
  type Scope,
  type Session,
  type SessionCounters,
  type SessionItem,
  type SessionStatus,
  type UpdateSessionInput,
  type WriteOptions,
} from './core/types.js';
export {
  IF_BUSY,
  MAX_DEBOUNCE_MS,
  RUN_DECISIONS,
  ON_OWNER_LOST,
  RUN_STATUSES,
  SERVICE_EVENT_TYPES,
  TERMINAL_EVENT_TYPES,
  OUTPUT_EVENT_TYPES,
  GAP_EVENT_TYPE,
  type GapData,
  type AdmittedRun,
  type IfBusy,
  type OnOwnerLost,
  type RunUsage,
  type ServeHandle,
  type ServeOptions,
  type InputOptions,
  type InterruptOptions,
  type NewOutputEvent,
  type OutputEvent,
  type Run,
  type RunContext,
  type RunDecision,
  type Runner,
  type RunResult,
  type Runs,
  type RunStatus,
  type StartRunOptions,
  type StreamOptions,
} from './core/runs.js';
export { demoRunner, type DemoRunnerOptions } from './runners/demo.js';
export { commandRunner, type CommandRunnerOptions } from './runners/command.js';
export {
  AgentSessionsClient,
  AgentSessionsHttpError,
  isAgentSessionsHttpError,
  type AgentSessionsClientOptions,
  type EventFeedOptions,
  type RequestOptions,
  type RunStreamOptions,
  type StartRunRequestOptions,
  type WriteRequestOptions,
} from './client/index.js';
