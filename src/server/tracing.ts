/**
 * A server span per HTTP request (OpenTelemetry HTTP conventions): named by the method and
 * the route pattern (`GET /v1/sessions/:id`), a child of the caller's trace when the request
 * carries a W3C `traceparent`, and the parent of the session operations its handler calls.
 * Registered only when tracing is on. Attributes hold the route, the path, the method and the
 * status: never a header (the API key travels in one), the query string or the body.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { SpanAttributes, Tracing } from '../core/tracing.js';

function pathOf(url: string): string {
  const q = url.indexOf('?');
  return q < 0 ? url : url.slice(0, q);
}

export function registerHttpTracing(app: FastifyInstance, tracing: Tracing): void {
  if (!tracing.enabled) return;
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
    // 'close' comes for every response: sent, failed, or left by its client (an SSE stream).
    reply.raw.once('close', () => {
      const status = reply.raw.statusCode;
      span.setAttribute('http.response.status_code', status);
      if (status >= 500) span.fail(String(status));
      span.end();
    });
    // The rest of the request (hooks, body, handler) runs in the span's context, so every
    // operation the handler calls is its child (a multi-chunk body included: tested).
    span.enter(done);
  });
}
