/**
 * The Fastify application: schema-first routes over a `Sessions` object, problem+json
 * errors, API-key auth and the OpenAPI document at /docs/json (UI at /docs).
 */
import Fastify, { LogController, type FastifyInstance, type FastifyServerOptions } from 'fastify';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { Ajv } from 'ajv';
import addFormatsModule from 'ajv-formats';
import type { Sessions } from '../app/sessions.js';
import { internals } from '../app/internal.js';
import { registerAuth } from './auth.js';
import { frameworkErrors, registerErrorHandling } from './errors.js';
import { registerRateLimit } from './limits.js';
import { requestLogger } from './request-log.js';
import { clientErrorHandler, registerExpectations, registerHostCheck, registerJsonParser } from './request-parsing.js';
import { adminErasureRoutes } from './routes/admin-erasure.js';
import { adminKeyRoutes } from './routes/admin-keys.js';
import { consoleRoutes } from './routes/console.js';
import { healthRoutes } from './routes/health.js';
import { itemRoutes } from './routes/items.js';
import { runRoutes } from './routes/runs.js';
import { sessionRoutes } from './routes/sessions.js';
import { eventRoutes } from './routes/events.js';
import { statsRoutes } from './routes/stats.js';
import { metricsRoutes, registerHttpMetrics } from './metrics.js';
import { registerHttpTracing } from './tracing.js';
import { SseStreams } from './sse-streams.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Fires when the client goes away before the response is sent. */
    abortSignal: AbortSignal;
  }
}

export interface BuildAppOptions {
  sessions: Sessions;
  logger?: FastifyServerOptions['loggerInstance'] | boolean;
  /** Serve /v1 without API keys (loopback development only). */
  noAuth?: boolean;
  version?: string;
}

// ajv-formats is published as CommonJS with a default export.
const addFormats = addFormatsModule as unknown as (ajv: Ajv) => Ajv;

function ajv(coerce: boolean): Ajv {
  return addFormats(
    new Ajv({
      // Unknown fields are an error, never silently dropped; body types are never coerced.
      removeAdditional: false,
      coerceTypes: coerce ? 'array' : false,
      useDefaults: true,
      allErrors: false,
      strict: false,
    }),
  );
}

export async function buildApp(options: BuildAppOptions): Promise<FastifyInstance> {
  const { sessions } = options;
  const parts = internals(sessions);
  const logger = options.logger;
  const app = Fastify({
    ...(typeof logger === 'object' ? { loggerInstance: logger } : { logger: logger ?? false }),
    bodyLimit: sessions.config.bodyLimitBytes,
    // A hop count is accepted at run time (proxy-addr), the type only lists the other forms.
    trustProxy: sessions.config.trustProxy as boolean | string,
    return503OnClosing: true,
    forceCloseConnections: true,
    routerOptions: { maxParamLength: 200 },
    requestIdHeader: 'x-request-id',
    frameworkErrors,
    // Errors of Node's HTTP parser leave as problem+json too; Host is checked in a hook for the same reason.
    clientErrorHandler,
    http: { requireHostHeader: false },
    // Fastify's own two lines per request are off: ours is one line, at the response's end
    // (request-log.ts).
    logController: new LogController({ disableRequestLogging: true }),
  });

  const bodyAjv = ajv(false);
  const queryAjv = ajv(true);
  app.setValidatorCompiler(({ schema, httpPart }) =>
    httpPart === 'body' ? bodyAjv.compile(schema) : queryAjv.compile(schema),
  );

  // First: the request's span encloses every other hook (authentication's key lookup too).
  registerHttpTracing(app, parts.tracing);
  app.decorateRequest('abortSignal', null as unknown as AbortSignal);
  const instanceId = sessions.config.instanceId;
  const logRequest = logger ? requestLogger(app.log) : null;
  app.addHook('onRequest', async (request, reply) => {
    // On the raw response, so hijacked streams (SSE) carry it too: a client behind a balancer
    // can tell which instance answered.
    reply.raw.setHeader('x-instance-id', instanceId);
    const controller = new AbortController();
    request.abortSignal = controller.signal;
    // `close` comes for every response, finished or not (a hijacked stream the client left).
    reply.raw.once('close', () => {
      if (!reply.raw.writableFinished) controller.abort(new DOMException('client went away', 'AbortError'));
      logRequest?.(request, reply);
    });
  });

  registerErrorHandling(app);
  registerHostCheck(app);
  registerExpectations(app, sessions.config.bodyLimitBytes);
  registerJsonParser(app, { depth: sessions.config.limits.jsonDepth, nodes: sessions.config.limits.jsonNodes });
  if (sessions.config.metricsEnabled) registerHttpMetrics(app, parts.metrics);
  registerAuth(app, parts.apiKeys, { disabled: options.noAuth ?? false, failures: parts.authFailureLimiter });
  registerRateLimit(app, parts.rateLimiter);

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'agent-sessions',
        description: 'Distributed session state for AI-agent servers',
        version: options.version ?? '0.1.0',
      },
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer' },
          apiKey: { type: 'apiKey', in: 'header', name: 'X-API-Key' },
        },
      },
      security: [{ bearer: [] }, { apiKey: [] }],
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });

  // Open SSE streams end with a `retry:` hint before the server drops its connections.
  const streams = new SseStreams();
  app.addHook('preClose', () => streams.closeAll());

  consoleRoutes(app);
  healthRoutes(app, sessions);
  sessionRoutes(app, sessions);
  itemRoutes(app, sessions);
  runRoutes(app, sessions, streams);
  adminKeyRoutes(app, sessions);
  adminErasureRoutes(app, sessions);
  eventRoutes(app, sessions, streams);
  statsRoutes(app, sessions);
  if (sessions.config.metricsEnabled) metricsRoutes(app, parts.metrics);
  return app;
}
