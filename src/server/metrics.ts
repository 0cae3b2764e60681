/**
 * Prometheus at the HTTP edge: one onResponse hook that counts and times every request by
 * its route pattern (`/v1/sessions/:id`, never the raw URL, which would make a series per
 * session), and GET /metrics. The route is outside /v1 and holds no tenant data; it is open
 * like /health unless METRICS_TOKEN is set (docs/security.md).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { SessionsMetrics, SseStream } from '../adapters/prometheus/metrics.js';
import { problem, sendProblem } from './errors.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** An SSE route: its connections are counted by stream kind, and its duration is not a latency. */
    stream?: SseStream;
  }
}

/** Requests no route matched share one label value. */
const UNMATCHED = 'unmatched';

export function registerHttpMetrics(app: FastifyInstance, metrics: SessionsMetrics): void {
  // The router keeps a literal ':' doubled (`/v1/sessions::batch-get`); the label shows the
  // path as documented. One entry per route pattern.
  const labels = new Map<string, string>();
  const routeLabel = (url: string): string => {
    let label = labels.get(url);
    if (label === undefined) {
      label = url.replaceAll('::', ':');
      labels.set(url, label);
    }
    return label;
  };
  app.addHook('onResponse', (request, reply, done) => {
    const { url, config } = request.routeOptions;
    metrics.observeRequest(
      request.method,
      url === undefined ? UNMATCHED : routeLabel(url),
      reply.statusCode,
      config?.stream === undefined ? reply.elapsedTime / 1000 : null,
    );
    done();
  });
}

function bearerToken(request: FastifyRequest): string | null {
  const auth = request.headers.authorization;
  if (typeof auth !== 'string') return null;
  return /^Bearer\s+(\S{1,512})\s*$/i.exec(auth)?.[1] ?? null;
}

export function metricsRoutes(app: FastifyInstance, metrics: SessionsMetrics): void {
  app.get('/metrics', {
    schema: {
      tags: ['health'],
      summary: 'Prometheus metrics of this instance (text exposition format)',
      description: metrics.scrapeTokenRequired
        ? 'Requires `Authorization: Bearer <METRICS_TOKEN>`.'
        : 'Open, like /health (set METRICS_TOKEN to require a bearer token).',
      security: metrics.scrapeTokenRequired ? [{ bearer: [] }] : [],
      produces: ['text/plain'],
    },
  }, async (request, reply) => {
    if (!metrics.acceptsScrapeToken(bearerToken(request))) {
      void reply.header('www-authenticate', 'Bearer realm="agent-sessions metrics"');
      return sendProblem(reply, problem('unauthorized', 'a valid metrics token is required'));
    }
    const body = await metrics.text();
    return reply.type(metrics.contentType).header('cache-control', 'no-store').send(body);
  });
}
