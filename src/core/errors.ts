/**
 * Typed errors with stable codes. Tests and clients match on `code`; the HTTP layer maps
 * codes to statuses in one place (src/server/errors.ts).
 */
export type ErrorCode =
  | 'validation_failed'
  | 'json_too_deep'
  | 'json_too_large'
  | 'number_out_of_range'
  | 'invalid_unicode'
  | 'invalid_cursor'
  | 'session_not_found'
  | 'item_not_found'
  | 'session_exists'
  | 'version_conflict'
  | 'invalid_transition'
  | 'session_ended'
  | 'limit_exceeded'
  | 'stale_fencing_token'
  | 'lock_timeout'
  | 'unauthorized'
  | 'forbidden'
  | 'unavailable'
  | 'aborted'
  | 'run_not_found'
  | 'session_busy'
  | 'no_active_run'
  | 'run_ended'
  | 'interrupted'
  | 'key_not_found'
  | 'tenant_not_found'
  | 'rate_limited'
  | 'too_many_connections'
  | 'queue_full'
  | 'data_dir_in_use'
  | 'transfer_invalid'
  | 'import_refused'
  | 'idempotency_key_reused';

export class AgentSessionsError extends Error {
  override name = 'AgentSessionsError';
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options?.details;
  }
}

export class ValidationError extends AgentSessionsError {
  override name = 'ValidationError';
  constructor(message: string, details?: Record<string, unknown>) {
    super('validation_failed', message, { details });
  }
}

export class NotFoundError extends AgentSessionsError {
  override name = 'NotFoundError';
  constructor(what: 'session' | 'item', id: string) {
    super(what === 'session' ? 'session_not_found' : 'item_not_found', `${what} ${id} not found`, { details: { id } });
  }
}

export class ConflictError extends AgentSessionsError {
  override name = 'ConflictError';
  constructor(
    code: 'session_exists' | 'version_conflict' | 'invalid_transition' | 'session_ended' | 'stale_fencing_token',
    message: string,
    details?: Record<string, unknown>,
  ) {
    super(code, message, { details });
  }
}

export class LimitError extends AgentSessionsError {
  override name = 'LimitError';
  constructor(message: string, details?: Record<string, unknown>) {
    super('limit_exceeded', message, { details });
  }
}

/** `withSessionLock` could not take the lease within its timeout. */
export class LockTimeoutError extends AgentSessionsError {
  override name = 'LockTimeoutError';
  constructor(sessionId: string, timeoutMs: number) {
    super('lock_timeout', `could not lock session ${sessionId} within ${timeoutMs} ms`, { details: { id: sessionId, timeoutMs } });
  }
}

/**
 * A per-key or per-session capacity is used up (requests per window, open streams, queued
 * runs): retry later. Maps to 429 with Retry-After when `retryAfterSeconds` is known.
 */
export class CapacityError extends AgentSessionsError {
  override name = 'CapacityError';
  readonly retryAfterSeconds: number | undefined;
  constructor(
    code: 'rate_limited' | 'too_many_connections' | 'queue_full',
    message: string,
    options: { retryAfterSeconds?: number; details?: Record<string, unknown> } = {},
  ) {
    super(code, message, { details: options.details });
    this.retryAfterSeconds = options.retryAfterSeconds;
  }
}

/** A dependency (the database) could not be reached: retryable, maps to 503. */
export class UnavailableError extends AgentSessionsError {
  override name = 'UnavailableError';
  constructor(message: string, cause?: unknown) {
    super('unavailable', message, { cause });
  }
}

export function isAgentSessionsError(err: unknown): err is AgentSessionsError {
  return err instanceof AgentSessionsError;
}

/** A run-related conflict or absence (runs, interrupt, input). */
export class RunError extends AgentSessionsError {
  override name = 'RunError';
  constructor(
    code: 'run_not_found' | 'session_busy' | 'no_active_run' | 'run_ended' | 'interrupted',
    message: string,
    details?: Record<string, unknown>,
  ) {
    super(code, message, { details });
  }
}
