/**
 * GET /v1/stats: the caller's tenant — sessions by status, active runs, outbox backlog — and
 * this instance's cache hit ratios, relay and sweep counters.
 */
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Sessions } from '../../app/sessions.js';
import { problems, statsJson, StatsResponse } from '../../api/index.js';

export function statsRoutes(app: FastifyInstance, sessions: Sessions): void {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();

  r.get('/v1/stats', {
    config: { scope: 'read' },
    schema: {
      tags: ['stats'],
      summary: 'Counts for the caller’s tenant; cache, relay and sweep counters of this instance',
      response: { 200: StatsResponse, ...problems(401, 403) },
    },
  }, async (request) => statsJson(await sessions.stats({ tenant: request.principal.tenant, signal: request.abortSignal })));
}
