/** The public library API of agent-sessions. */
export { createSessions, Sessions, type CreateSessionsOptions, type HealthReport, type Mode } from './sessions.js';
export type { CacheTierStats, ServiceStats } from './sessions.js';
export type { SessionsMetrics, SseStream } from './metrics.js';
export { EVENT_TYPES, EventFeed, type EventType, type SubscribeOptions } from './core/events.js';
export type { EventEnvelope } from './core/ports.js';
export type { RelayStats } from './core/outbox-relay.js';
export { orphanedRunsTask, Sweeper, type SweepTask, type SweepTaskStats } from './core/sweeper.js';
export { SessionService, type ModifyOptions } from './core/session-service.js';
export { loadConfig, ConfigError, type Config } from './config.js';
export { buildApp, type BuildAppOptions } from './server/app.js';
export {
  AgentSessionsError,
  ConflictError,
  LimitError,
  NotFoundError,
  UnavailableError,
  ValidationError,
  type ErrorCode,
} from './core/errors.js';
export { DEFAULT_LIMITS, type Limits } from './core/limits.js';
export type { Scope, Principal, ApiKeyRecord } from './core/api-keys.js';
export {
  SESSION_STATUSES,
  canTransition,
  type CallOptions,
  type CounterName,
  type CreateSessionInput,
  type ListItemsQuery,
  type ListSessionsFilter,
  type Metadata,
  type NewItem,
  type Page,
  type Session,
  type SessionCounters,
  type SessionItem,
  type SessionStatus,
  type UpdateSessionInput,
  type WriteOptions,
} from './core/types.js';
export { RunManager, type RunLogger } from './core/run-manager.js';
export {
  IF_BUSY,
  RUN_STATUSES,
  TERMINAL_EVENT_TYPES,
  type IfBusy,
  type InputOptions,
  type InterruptOptions,
  type NewOutputEvent,
  type OutputEvent,
  type Run,
  type RunContext,
  type Runner,
  type RunResult,
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
