/**
 * The one place where errors become HTTP: every error leaves as application/problem+json
 * with a stable `code`. Internal details (stacks, SQL) never leave the server.
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { AgentSessionsError, CapacityError } from '../core/errors.js';
import { problem, type ProblemBody, type ProblemCode } from '../api/errors.js';

export { problem, type ProblemBody } from '../api/errors.js';

export function sendProblem(reply: FastifyReply, body: ProblemBody): FastifyReply {
  return reply.status(body.status).type('application/problem+json').send(body);
}

/** Fastify's own error codes for bad requests, mapped to our stable codes. */
const FASTIFY_CODES: Record<string, ProblemCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'payload_too_large',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'malformed_request',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'malformed_json',
  FST_ERR_CTP_INVALID_JSON_BODY: 'malformed_json',
  FST_ERR_BAD_URL: 'malformed_request',
  FST_ERR_ASYNC_CONSTRAINT: 'malformed_request',
};

export function toProblem(err: unknown): ProblemBody {
  if (err instanceof AgentSessionsError) return problem(err.code, err.message, err.details ? { details: err.details } : {});
  const e = err as FastifyError & { validation?: unknown[]; validationContext?: string };
  if (Array.isArray(e.validation)) {
    return problem('validation_failed', `invalid ${e.validationContext ?? 'request'}: ${e.message}`, {
      errors: e.validation.map((v) => {
        const x = v as { instancePath?: string; message?: string; keyword?: string; params?: unknown };
        return { path: x.instancePath ?? '', message: x.message ?? 'invalid', keyword: x.keyword ?? 'invalid' };
      }),
    });
  }
  const known = e.code ? FASTIFY_CODES[e.code] : undefined;
  if (known) return problem(known, e.message);
  if (err instanceof SyntaxError) return problem('malformed_json', 'the body is not valid JSON');
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return problem('bad_request', e.message, {}, e.statusCode);
  }
  return problem('internal_error', 'the server failed to handle this request');
}

/**
 * Errors the router raises before any route or hook runs (a URL that is not valid
 * percent-encoding, a failed constraint): Fastify's `frameworkErrors` option, which the
 * error handler never sees.
 */
export function frameworkErrors(err: FastifyError, _request: FastifyRequest, reply: FastifyReply): void {
  void sendProblem(reply, toProblem(err));
}

/** The most bytes of a too-large body read and dropped after its 413 before the connection is cut. */
export const DRAIN_LIMIT_BYTES = 16 * 1024 * 1024;

/**
 * After a 413 for a body still arriving: keep the connection and read the rest of the body
 * (up to `DRAIN_LIMIT_BYTES`, then the connection is cut), so that the client, still
 * sending, reads the answer instead of a reset. Fastify marks such answers
 * `Connection: close`, which closes the socket under the client's feet; removed here. The
 * HTTP parser still frames the body, so its bytes are never read as another request.
 */
export function drainRejectedBody(request: FastifyRequest, reply: FastifyReply): void {
  const raw = request.raw;
  if (raw.complete || raw.destroyed) return;
  // A body declared larger than the drain is not waited for: the connection closes after the answer.
  if (Number(raw.headers['content-length']) > DRAIN_LIMIT_BYTES) return;
  reply.removeHeader('connection');
  let drained = 0;
  const onData = (chunk: Buffer) => {
    drained += chunk.length;
    if (drained > DRAIN_LIMIT_BYTES) {
      raw.off('data', onData);
      raw.socket?.destroy();
    }
  };
  raw.on('data', onData);
  raw.once('end', () => raw.off('data', onData));
  raw.resume();
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
          tenant_id: request.principal?.tenant,
          key_id: request.principal?.keyId,
          session_id: typeof params.id === 'string' ? params.id : undefined,
          run_id: typeof params.runId === 'string' ? params.runId : undefined,
          route: request.routeOptions.url,
        },
        'request failed',
      );
      if (body.status === 503) void reply.header('retry-after', '1');
    }
    if (body.code === 'payload_too_large') drainRejectedBody(request, reply);
    if (err instanceof CapacityError && err.retryAfterSeconds !== undefined) {
      void reply.header('retry-after', String(err.retryAfterSeconds));
    }
    return sendProblem(reply, body);
  });
  app.setNotFoundHandler((request, reply) =>
    sendProblem(reply, problem('route_not_found', `no route ${request.method} ${request.url.split('?')[0]}`)),
  );
}
