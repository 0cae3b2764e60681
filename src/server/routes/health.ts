import type { FastifyInstance } from 'fastify';
import type { Sessions } from '../../app/sessions.js';
import { Type } from 'typebox';
import { Problem, readyJson, ReadyResponse } from '../../api/index.js';

export function healthRoutes(app: FastifyInstance, sessions: Sessions): void {
  app.get('/health', { schema: { tags: ['health'], summary: 'Liveness' } }, async () => ({ status: 'ok' }));

  app.get('/ready', {
    schema: { tags: ['health'], summary: 'Readiness, with each dependency', response: { 200: ReadyResponse, 503: Type.Union([ReadyResponse, Problem]) } },
  }, async (request, reply) => {
    const report = await sessions.health();
    for (const d of report.dependencies) {
      if (!d.ok) request.log.warn({ dependency: d.name, error: d.error }, 'dependency unavailable');
    }
    return reply.status(report.ok ? 200 : 503).send(readyJson(report));
  });
}
