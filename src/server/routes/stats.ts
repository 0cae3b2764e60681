/**
 * GET /v1/stats: the caller's tenant — sessions by status, active runs, outbox backlog — and
 * this instance's cache hit ratios, relay and sweep counters.
 */
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type, type Static } from 'typebox';
import type { Sessions } from '../../sessions.js';
import { Problem } from '../schemas.js';

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) => Type.Union([t, Type.Null()]);
const Counts = Type.Record(Type.String(), Type.Integer());

export const StatsResponse = Type.Object({
  tenant: Type.String(),
  instance_id: Type.String(),
  sessions: Type.Object({ by_status: Counts, total: Type.Integer() }),
  runs: Type.Object({ active: Type.Integer() }),
  outbox: Type.Object({
    publisher: Nullable(Type.String()),
    backlog: Nullable(Type.Integer()),
    oldest_unpublished_age_seconds: Nullable(Type.Number()),
    relay: Nullable(
      Type.Object({
        running: Type.Boolean(),
        published: Type.Integer(),
        duplicates: Type.Integer(),
        failures: Type.Integer(),
        consecutive_failures: Type.Integer(),
        last_published_at: Nullable(Type.String()),
      }),
    ),
  }),
  cache: Type.Record(
    Type.String(),
    Type.Object({ hits: Type.Integer(), misses: Type.Integer(), size: Type.Integer(), hit_ratio: Nullable(Type.Number()) }),
  ),
  sweeps: Type.Record(
    Type.String(),
    Type.Object({
      passes: Type.Integer(),
      affected: Type.Integer(),
      errors: Type.Integer(),
      last_run_at: Nullable(Type.String()),
      last_error: Nullable(Type.String()),
    }),
  ),
});

export type StatsJson = Static<typeof StatsResponse>;

export function statsRoutes(app: FastifyInstance, sessions: Sessions): void {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();

  r.get('/v1/stats', {
    config: { scope: 'read' },
    schema: {
      tags: ['stats'],
      summary: 'Counts for the caller’s tenant; cache, relay and sweep counters of this instance',
      response: { 200: StatsResponse, 401: Problem, 403: Problem },
    },
  }, async (request) => {
    const s = await sessions.stats({ tenant: request.principal.tenant, signal: request.abortSignal });
    const relay = s.outbox.relay;
    return {
      tenant: s.tenant,
      instance_id: s.instanceId,
      sessions: { by_status: s.sessions.byStatus, total: s.sessions.total },
      runs: { active: s.runs.active },
      outbox: {
        publisher: s.outbox.publisher,
        backlog: s.outbox.backlog,
        oldest_unpublished_age_seconds: s.outbox.oldestUnpublishedAgeSeconds,
        relay: relay && {
          running: relay.running,
          published: relay.published,
          duplicates: relay.duplicates,
          failures: relay.failures,
          consecutive_failures: relay.consecutiveFailures,
          last_published_at: relay.lastPublishedAt,
        },
      },
      cache: Object.fromEntries(
        Object.entries(s.cache).map(([tier, c]) => [tier, { hits: c.hits, misses: c.misses, size: c.size, hit_ratio: c.hitRatio }]),
      ),
      sweeps: Object.fromEntries(
        Object.entries(s.sweeps).map(([task, t]) => [
          task,
          { passes: t.passes, affected: t.affected, errors: t.errors, last_run_at: t.lastRunAt, last_error: t.lastError },
        ]),
      ),
    };
  });
}
