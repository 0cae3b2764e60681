/**
 * The series read at scrape time, over stand-in sources: the breaker state mapping, and the
 * outbox gauges when the database cannot be asked (NaN, never a made-up 0).
 */
import { describe, expect, it } from 'vitest';
import { SessionsMetrics, type MetricsSources } from '../../src/adapters/prometheus/metrics.js';

function sources(overrides: Partial<MetricsSources> = {}): MetricsSources {
  return {
    cacheStats: () => ({ near: { hits: 3, misses: 2, size: 1 }, redis: { hits: 1, misses: 1, size: 0, errors: 4 } }),
    fallbackStats: () => ({ redis_miss: 1, redis_unavailable: 4 }),
    breaker: null,
    runs: () => ({ running: 2, queued: 1 }),
    relay: null,
    outboxLag: null,
    sweeps: () => ({ expire_sessions: { passes: 5, affected: 7, errors: 1 } }),
    writeGroups: () => ({ create: { groups: 3, calls: 20 }, increment: { groups: 0, calls: 0 } }),
    ...overrides,
  };
}

describe('SessionsMetrics', () => {
  it('maps the breaker states to 0 closed, 1 open, 2 half-open', async () => {
    const breaker = { state: 'closed', openings: 2, shortCircuited: 9 };
    const m = new SessionsMetrics({ processMetrics: false });
    m.attach(sources({ breaker }));
    const value = async () => (await m.registry.getSingleMetric('agent_sessions_redis_breaker_state')?.get())?.values[0]?.value;
    expect(await value()).toBe(0);
    for (const [state, n] of [['open', 1], ['recovering', 2], ['draining', 2], ['closed', 0]] as const) {
      breaker.state = state;
      expect(await value()).toBe(n);
    }
    const text = await m.registry.metrics();
    expect(text).toContain('agent_sessions_redis_breaker_openings_total 2');
    expect(text).toContain('agent_sessions_redis_short_circuited_total 9');
    expect(text).toContain('agent_sessions_cache_errors_total{tier="redis"} 4');
    expect(text).toContain('agent_sessions_postgres_fallbacks_total{reason="redis_unavailable"} 4');
    expect(text).toContain('agent_sessions_runs_active{state="queued"} 1');
    expect(text).toContain('agent_sessions_sweep_actions_total{task="expire_sessions"} 7');
    expect(text).toContain('agent_sessions_write_group_statements_total{write="create"} 3');
    expect(text).toContain('agent_sessions_write_group_writes_total{write="create"} 20');
  });

  it('reads NaN for the outbox gauges when the query fails, and the values when it works', async () => {
    let fail = true;
    const m = new SessionsMetrics({ processMetrics: false });
    m.attach(
      sources({
        outboxLag: async () => {
          if (fail) throw new Error('database down');
          return { backlog: 12, oldestUnpublishedAgeSeconds: 3.5 };
        },
      }),
    );
    expect(await m.registry.metrics()).toMatch(/^agent_sessions_outbox_backlog nan$/im); // prom-client writes "Nan"; Prometheus parses NaN in any case
    fail = false;
    await new Promise((r) => setTimeout(r, 1_100)); // past the one-query-per-scrape window
    const text = await m.registry.metrics();
    expect(text).toMatch(/^agent_sessions_outbox_backlog 12$/m);
    expect(text).toMatch(/^agent_sessions_outbox_oldest_unpublished_age_seconds 3\.5$/m);
  });

  it('checks the scrape token in constant time, and needs none when unset', () => {
    const open = new SessionsMetrics({ processMetrics: false });
    expect(open.scrapeTokenRequired).toBe(false);
    expect(open.acceptsScrapeToken(null)).toBe(true);
    const guarded = new SessionsMetrics({ processMetrics: false, scrapeToken: 'a-token-of-sixteen+' });
    expect(guarded.acceptsScrapeToken(null)).toBe(false);
    expect(guarded.acceptsScrapeToken('a-token-of-sixteen')).toBe(false);
    expect(guarded.acceptsScrapeToken('a-token-of-sixteen+')).toBe(true);
  });
});
