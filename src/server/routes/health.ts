import type { FastifyInstance } from 'fastify';
import type { Mode, Sessions } from '../../sessions.js';

/** GET /ready: 200 when ready, 503 when the database is not reachable. */
export interface ReadyJson {
  status: 'ready' | 'unavailable';
  mode: Mode;
  instance_id: string;
  dependencies: Array<{ name: string; ok: boolean; latency_ms: number }>;
}

export function healthRoutes(app: FastifyInstance, sessions: Sessions): void {
  app.get('/health', { schema: { tags: ['health'], summary: 'Liveness' } }, async () => ({ status: 'ok' }));

  app.get('/ready', { schema: { tags: ['health'], summary: 'Readiness, with each dependency' } }, async (request, reply) => {
    const report = await sessions.health();
    // The route is public: failures are named here, their details (addresses) only logged.
    for (const d of report.dependencies) {
      if (!d.ok) request.log.warn({ dependency: d.name, error: d.error }, 'dependency unavailable');
    }
    const body: ReadyJson = {
      status: report.ok ? 'ready' : 'unavailable',
      mode: report.mode,
      instance_id: report.instanceId,
      dependencies: report.dependencies.map((d) => ({
        name: d.name,
        ok: d.ok,
        latency_ms: Math.round(d.latencyMs * 100) / 100,
      })),
    };
    return reply.status(report.ok ? 200 : 503).send(body);
  });
}
