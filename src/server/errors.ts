/**
 * The one place where errors become HTTP: every error leaves as application/problem+json
 * with a stable `code`. Internal details (stacks, SQL) never leave the server.
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { AgentSessionsError, CapacityError, type ErrorCode } from '../core/errors.js';

const STATUS_BY_CODE: Record<ErrorCode, number> = {
  validation_failed: 400,
  invalid_cursor: 400,
  unauthorized: 401,
  forbidden: 403,
  session_not_found: 404,
  item_not_found: 404,
  session_exists: 409,
  version_conflict: 409,
  invalid_transition: 409,
  session_ended: 409,
  stale_fencing_token: 409,
  lock_timeout: 409,
  limit_exceeded: 413,
  aborted: 499,
  unavailable: 503,
  run_not_found: 404,
  run_in_progress: 409,
  no_active_run: 409,
  run_ended: 409,
  interrupted: 409,
  key_not_found: 404,
  rate_limited: 429,
  too_many_connections: 429,
  queue_full: 429,
};

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  406: 'Not Acceptable',
  409: 'Conflict',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  428: 'Precondition Required',
  429: 'Too Many Requests',
  499: 'Client Closed Request',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

export interface ProblemBody {
  type: string;
  title: string;
  status: number;
  code: string;
  detail?: string;
  [extra: string]: unknown;
}

export function problem(status: number, code: string, detail?: string, extra: Record<string, unknown> = {}): ProblemBody {
  return {
    type: `urn:agent-sessions:problem:${code}`,
    title: TITLES[status] ?? 'Error',
    status,
    code,
    ...(detail === undefined ? {} : { detail }),
    ...extra,
  };
}

export function sendProblem(reply: FastifyReply, body: ProblemBody): FastifyReply {
  return reply.status(body.status).type('application/problem+json').send(body);
}

/** Fastify's own error codes for bad requests, mapped to our stable codes. */
const FASTIFY_CODES: Record<string, [number, string]> = {
  FST_ERR_CTP_BODY_TOO_LARGE: [413, 'payload_too_large'],
  FST_ERR_CTP_INVALID_MEDIA_TYPE: [415, 'unsupported_media_type'],
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: [400, 'malformed_request'],
  FST_ERR_CTP_EMPTY_JSON_BODY: [400, 'malformed_json'],
  FST_ERR_CTP_INVALID_JSON_BODY: [400, 'malformed_json'],
  FST_ERR_BAD_URL: [400, 'malformed_request'],
  FST_ERR_ASYNC_CONSTRAINT: [400, 'malformed_request'],
};

export function toProblem(err: unknown): ProblemBody {
  if (err instanceof AgentSessionsError) {
    const status = STATUS_BY_CODE[err.code];
    return problem(status, err.code, err.message, err.details ? { details: err.details } : {});
  }
  const e = err as FastifyError & { validation?: unknown[]; validationContext?: string };
  if (Array.isArray(e.validation)) {
    return problem(400, 'validation_failed', `invalid ${e.validationContext ?? 'request'}: ${e.message}`, {
      errors: e.validation.map((v) => {
        const x = v as { instancePath?: string; message?: string; keyword?: string; params?: unknown };
        return { path: x.instancePath ?? '', message: x.message ?? 'invalid', keyword: x.keyword ?? 'invalid' };
      }),
    });
  }
  const known = e.code ? FASTIFY_CODES[e.code] : undefined;
  if (known) return problem(known[0], known[1], e.message);
  if (err instanceof SyntaxError) return problem(400, 'malformed_json', 'the body is not valid JSON');
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return problem(e.statusCode, 'bad_request', e.message);
  }
  return problem(500, 'internal_error', 'the server failed to handle this request');
}

/**
 * Errors the router raises before any route or hook runs (a URL that is not valid
 * percent-encoding, a failed constraint): Fastify's `frameworkErrors` option, which the
 * error handler never sees.
 */
export function frameworkErrors(err: FastifyError, _request: FastifyRequest, reply: FastifyReply): void {
  void sendProblem(reply, toProblem(err));
}

export function registerErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((err: unknown, request: FastifyRequest, reply: FastifyReply) => {
    const body = toProblem(err);
    if (body.status >= 500) {
      // Who and what, for finding the request again: tenant and key (never the key itself),
      // and the session and run the route names.
      const params = (request.params ?? {}) as { id?: unknown; runId?: unknown };
      request.log.error(
        {
          err,
          tenant: request.principal?.tenant,
          key_id: request.principal?.keyId,
          session_id: typeof params.id === 'string' ? params.id : undefined,
          run_id: typeof params.runId === 'string' ? params.runId : undefined,
          route: request.routeOptions.url,
        },
        'request failed',
      );
      if (body.status === 503) void reply.header('retry-after', '1');
    }
    if (err instanceof CapacityError && err.retryAfterSeconds !== undefined) {
      void reply.header('retry-after', String(err.retryAfterSeconds));
    }
    return sendProblem(reply, body);
  });
  app.setNotFoundHandler((request, reply) =>
    sendProblem(reply, problem(404, 'route_not_found', `no route ${request.method} ${request.url.split('?')[0]}`)),
  );
}
