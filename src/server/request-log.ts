/**
 * One log line per request, written when its response is over: `method`, `route` (the
 * pattern, never the URL), `status`, `duration_ms`, who (`tenant_id`, `key_id`) and what
 * (`session_id`, `run_id`) as the route names them, and `reqId`. Never a header, a body or a
 * query string, so neither an API key nor a metrics token can reach the log.
 *
 * Written from the response's `close` (not an `onResponse` hook): it fires for every response,
 * including a hijacked SSE stream the client closed, where `finish` (and so `onResponse`)
 * never comes. The level is decided first and nothing else is done when it is off.
 */
import type { FastifyBaseLogger, FastifyReply, FastifyRequest } from 'fastify';

type LineLevel = 'info' | 'error';

/** 5xx is an error of ours (or an outage); 4xx is the client's, information like a 2xx. */
export function requestLogLevel(status: number | null): LineLevel {
  return status !== null && status >= 500 ? 'error' : 'info';
}

/** An unmatched path is logged without its query string and at most this long. */
const MAX_PATH_CHARS = 200;

export interface RequestLine {
  reqId: string;
  method: string;
  route: string | null;
  /** Only when `route` is null (nothing matched): the path asked for. */
  path?: string;
  /** null when the client went away before any response was sent. */
  status: number | null;
  duration_ms: number;
  tenant_id: string | null;
  key_id: string | null;
  session_id: string | null;
  run_id: string | null;
  /** The client closed the connection before the response ended (normal for an SSE stream). */
  aborted?: true;
}

export function requestLine(request: FastifyRequest, reply: FastifyReply): RequestLine {
  const raw = reply.raw;
  const route = request.routeOptions.url ?? null;
  const params = request.params as { id?: unknown; runId?: unknown } | undefined;
  const principal = request.principal as FastifyRequest['principal'] | null;
  const line: RequestLine = {
    reqId: request.id,
    method: request.method,
    route,
    status: raw.headersSent ? raw.statusCode : null,
    duration_ms: Math.round(reply.elapsedTime * 100) / 100,
    tenant_id: principal?.tenant ?? null,
    key_id: principal?.keyId ?? null,
    session_id: typeof params?.id === 'string' && route?.startsWith('/v1/sessions/') ? params.id : null,
    run_id: typeof params?.runId === 'string' ? params.runId : null,
  };
  if (route === null) {
    const q = request.url.indexOf('?');
    line.path = (q === -1 ? request.url : request.url.slice(0, q)).slice(0, MAX_PATH_CHARS);
  }
  if (!raw.writableFinished) line.aborted = true;
  return line;
}

/** What the app calls when a response is over; a no-op function when there is no logger. */
export function requestLogger(log: FastifyBaseLogger): (request: FastifyRequest, reply: FastifyReply) => void {
  const enabled =
    typeof (log as { isLevelEnabled?: unknown }).isLevelEnabled === 'function'
      ? (level: LineLevel) => (log as unknown as { isLevelEnabled(l: string): boolean }).isLevelEnabled(level)
      : () => true;
  return (request, reply) => {
    const raw = reply.raw;
    const level = requestLogLevel(raw.headersSent ? raw.statusCode : null);
    if (!enabled(level)) return;
    log[level](requestLine(request, reply), 'request');
  };
}
