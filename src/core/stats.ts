/** What an instance reports about itself: readiness and counters (GET /ready, GET /v1/stats). */
import type { RelayStats } from './outbox-relay.js';
import type { DependencyHealth } from './ports.js';
import type { SweepTaskStats } from './sweeper.js';

/** Embedded (PGlite in one process) or distributed (PostgreSQL, optionally Redis and NATS). */
export const MODES = ['embedded', 'distributed'] as const;
export type Mode = (typeof MODES)[number];

export interface HealthReport {
  ok: boolean;
  mode: Mode;
  instanceId: string;
  dependencies: DependencyHealth[];
}

export interface CacheTierStats {
  hits: number;
  misses: number;
  size: number;
  /** hits / (hits + misses); null before the first lookup. */
  hitRatio: number | null;
}

/** GET /v1/stats: counts for one tenant, plus this instance's caches, relay and sweeps. */
export interface ServiceStats {
  tenant: string;
  instanceId: string;
  sessions: { byStatus: Record<string, number>; total: number };
  runs: { active: number };
  outbox: {
    /** The broker events are relayed to; null: none configured (the feed is the only consumer). */
    publisher: string | null;
    /** Events not yet acknowledged by the broker; null without a broker. */
    backlog: number | null;
    oldestUnpublishedAgeSeconds: number | null;
    relay: RelayStats | null;
  };
  cache: Record<string, CacheTierStats>;
  sweeps: Record<string, SweepTaskStats>;
}
