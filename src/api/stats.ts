/** `GET /v1/stats` and `GET /ready` on the wire. */
import { Type, type Static } from 'typebox';
import { MODES, type HealthReport, type ServiceStats } from '../core/stats.js';
import { Nullable, StringEnum, toSnake } from './common.js';

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

const mapValues = <V, W>(record: Record<string, V>, fn: (v: V) => W): Record<string, W> =>
  Object.fromEntries(Object.entries(record).map(([k, v]) => [k, fn(v)]));

export function statsJson(s: ServiceStats): StatsJson {
  return {
    tenant: s.tenant,
    instance_id: s.instanceId,
    sessions: { by_status: s.sessions.byStatus, total: s.sessions.total },
    runs: { active: s.runs.active },
    outbox: {
      publisher: s.outbox.publisher,
      backlog: s.outbox.backlog,
      oldest_unpublished_age_seconds: s.outbox.oldestUnpublishedAgeSeconds,
      relay: s.outbox.relay && toSnake(s.outbox.relay),
    },
    cache: mapValues(s.cache, (c) => toSnake(c)),
    sweeps: mapValues(s.sweeps, (t) => toSnake(t)),
  };
}

export const ReadyResponse = Type.Object({
  status: StringEnum(['ready', 'unavailable']),
  mode: StringEnum(MODES),
  instance_id: Type.String(),
  dependencies: Type.Array(Type.Object({ name: Type.String(), ok: Type.Boolean(), latency_ms: Type.Number() })),
});
/** GET /ready: 200 when ready, 503 when the database is not reachable. */
export type ReadyJson = Static<typeof ReadyResponse>;

export function readyJson(report: HealthReport): ReadyJson {
  return {
    status: report.ok ? 'ready' : 'unavailable',
    mode: report.mode,
    instance_id: report.instanceId,
    // The route is public: failures are named, their details (addresses) only logged.
    dependencies: report.dependencies.map((d) => ({ name: d.name, ok: d.ok, latency_ms: Math.round(d.latencyMs * 100) / 100 })),
  };
}
