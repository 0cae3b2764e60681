/**
 * The error registry: every stable `code` an answer can carry, with its HTTP status. The
 * server maps errors to problem+json through it and the client reads it back, so a code
 * exists in exactly one place. Core errors (`AgentSessionsError.code`) and the codes only the
 * HTTP edge produces (a body that is not JSON, a route that does not exist) are both here.
 */
import type { ErrorCode } from '../core/errors.js';

/** Codes raised at the HTTP edge itself, before or around the core. */
export const EDGE_ERROR_CODES = [
  'malformed_json',
  'malformed_request',
  'payload_too_large',
  'headers_too_large',
  'request_timeout',
  'expectation_failed',
  'unsupported_media_type',
  'route_not_found',
  'bad_request',
  'internal_error',
] as const;
export type EdgeErrorCode = (typeof EDGE_ERROR_CODES)[number];

/** Every code a problem+json answer may carry. */
export type ProblemCode = ErrorCode | EdgeErrorCode;

/** code → HTTP status. `bad_request` is Fastify's catch-all for other 4xx errors of its own and keeps their status. */
export const PROBLEM_STATUS: Readonly<Record<ProblemCode, number>> = Object.freeze({
  validation_failed: 400,
  json_too_deep: 400,
  json_too_large: 400,
  number_out_of_range: 400,
  invalid_unicode: 400,
  invalid_cursor: 400,
  malformed_json: 400,
  malformed_request: 400,
  bad_request: 400,
  unauthorized: 401,
  forbidden: 403,
  session_not_found: 404,
  item_not_found: 404,
  run_not_found: 404,
  key_not_found: 404,
  tenant_not_found: 404,
  route_not_found: 404,
  session_exists: 409,
  version_conflict: 409,
  invalid_transition: 409,
  session_ended: 409,
  stale_fencing_token: 409,
  lock_timeout: 409,
  session_busy: 409,
  no_active_run: 409,
  run_ended: 409,
  interrupted: 409,
  limit_exceeded: 413,
  payload_too_large: 413,
  unsupported_media_type: 415,
  rate_limited: 429,
  too_many_connections: 429,
  queue_full: 429,
  request_timeout: 408,
  expectation_failed: 417,
  headers_too_large: 431,
  aborted: 499,
  internal_error: 500,
  unavailable: 503,
  data_dir_in_use: 503,
  transfer_invalid: 400,
  import_refused: 409,
  idempotency_key_reused: 422,
});

const TITLES: Readonly<Record<number, string>> = Object.freeze({
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  406: 'Not Acceptable',
  408: 'Request Timeout',
  409: 'Conflict',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  417: 'Expectation Failed',
  422: 'Unprocessable Content',
  428: 'Precondition Required',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  499: 'Client Closed Request',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
});

export function problemTitle(status: number): string {
  return TITLES[status] ?? 'Error';
}

/** A dependency outage (503) or a limit (429): the same request may succeed later. */
export function isRetryableStatus(status: number): boolean {
  return status === 503 || status === 429;
}

/** An application/problem+json body (RFC 9457) with the stable `code`. */
export interface ProblemBody {
  type: string;
  title: string;
  status: number;
  code: string;
  detail?: string;
  [extra: string]: unknown;
}

/**
 * The problem body for `code`; its status comes from the registry (`status` overrides it only
 * for `bad_request`, which carries the status Fastify chose).
 */
export function problem(code: ProblemCode, detail?: string, extra: Record<string, unknown> = {}, status?: number): ProblemBody {
  const s = code === 'bad_request' && status !== undefined ? status : PROBLEM_STATUS[code];
  return {
    type: `urn:agent-sessions:problem:${code}`,
    title: problemTitle(s),
    status: s,
    code,
    ...(detail === undefined ? {} : { detail }),
    ...extra,
  };
}
