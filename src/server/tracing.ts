/**
 * A server span per HTTP request (OpenTelemetry HTTP conventions): named by the method and
 * the route pattern (`GET /v1/sessions/:id`), a child of the caller's trace when the request
 * carries a W3C `traceparent`, and the parent of the session operations its handler calls.
 * Registered only when tracing is on. Attributes hold the route, the path, the method and the
 * status: never a header (the API key travels in one), the query string or the body.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { OpenSpan, SpanAttributes, Tracing } from '../core/tracing.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The request's server span (tracing on only). */
    traceSpan: OpenSpan | null;
  }
}

function pathOf(url: string): string {
  const q = url.indexOf('?');
  return q < 0 ? url : url.slice(0, q);
}

export function registerHttpTracing(app: FastifyInstance, tracing: Tracing): void {
  if (!tracing.enabled) return;
  app.decorateRequest('traceSpan', null);
  // The router keeps a literal ':' doubled (`/v1/sessions::batch-get`); spans show the path as documented.
  const route = (request: FastifyRequest): string | undefined => request.routeOptions.url?.replaceAll('::', ':');

  app.addHook('onRequest', (request, reply, done) => {
    const pattern = route(request);
    const attributes: SpanAttributes = {
      'http.request.method': request.method,
      'url.path': pathOf(request.url),
      'url.scheme': request.protocol,
      'network.protocol.version': request.raw.httpVersion,
    };
    if (pattern !== undefined) attributes['http.route'] = pattern;
    const span = tracing.start(pattern === undefined ? request.method : `${request.method} ${pattern}`, {
      kind: 'server',
      attributes,
      remoteParent: request.headers,
    });
    request.traceSpan = span;
    // 'close' comes for every response: sent, failed, or left by its client (an SSE stream).
    reply.raw.once('close', () => {
      const status = reply.raw.statusCode;
      span.setAttribute('http.response.status_code', status);
      if (status >= 500) span.fail(String(status));
      span.end();
    });
    span.enter(done);
  });

  // The request's body arrives on the socket's events, outside the span's context: the
  // handler is entered in it again, so every operation it calls is the span's child.
  app.addHook('preHandler', (request, _reply, done) => {
    if (request.traceSpan) request.traceSpan.enter(done);
    else done();
  });
}
