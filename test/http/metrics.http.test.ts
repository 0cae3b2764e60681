/**
 * GET /metrics over a real socket: the Prometheus text, the request counter labelled by route
 * pattern (never the raw id), SSE gauges, lock and interrupt series, the scrape token and the
 * switch; cache tiers and PostgreSQL fallbacks on PostgreSQL + Redis with a run interrupted
 * across instances; several Sessions in one process.
 */
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/server/app.js';
import { demoRunner } from '../../src/runners/demo.js';
import { createSessions, type Sessions } from '../../src/internal.js';
import { freshDatabase, requireServices, serviceUrl, uniqueKeyPrefix, uniqueNatsNames, type FreshDatabase } from '../setup/harness.js';
import { deleteStream, waitFor } from '../events/support.js';

const ADMIN = 'admin-key-for-metrics-tests-0123';
const auth = { authorization: `Bearer ${ADMIN}` };
const json = { ...auth, 'content-type': 'application/json' };

/** The value of one series: `name` with (at least) these labels; undefined when absent. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3]);
  }
  return undefined;
}

async function scrape(base: string, headers: Record<string, string> = {}): Promise<string> {
  const res = await fetch(`${base}/metrics`, { headers });
  expect(res.status).toBe(200);
  return res.text();
}

async function listen(sessions: Sessions): Promise<{ app: FastifyInstance; base: string }> {
  const app = await buildApp({ sessions });
  return { app, base: await app.listen({ port: 0, host: '127.0.0.1' }) };
}

async function createSession(base: string): Promise<string> {
  const res = await fetch(`${base}/v1/sessions`, { method: 'POST', headers: json, body: '{}' });
  expect(res.status).toBe(201);
  return ((await res.json()) as { id: string }).id;
}

describe('metrics over HTTP (embedded)', () => {
  let sessions: Sessions;
  let app: FastifyInstance;
  let base: string;

  beforeAll(async () => {
    sessions = await createSessions({
      env: { DATA_DIR: ':memory:', ADMIN_API_KEY: ADMIN, RUN_SWEEP_INTERVAL_MS: '0', SWEEP_INTERVAL_MS: '0' },
      agent: demoRunner({ wordDelayMs: 20 }),
    });
    ({ app, base } = await listen(sessions));
  });

  afterAll(async () => {
    await app?.close();
    await sessions?.close();
  });

  it('serves Prometheus text with the service and process series, without a key', async () => {
    const res = await fetch(`${base}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    for (const name of [
      'agent_sessions_http_requests_total',
      'agent_sessions_http_request_duration_seconds',
      'agent_sessions_cache_hits_total',
      'agent_sessions_cache_misses_total',
      'agent_sessions_sse_connections',
      'agent_sessions_runs_active',
      'agent_sessions_runs_finished_total',
      'agent_sessions_interrupts_requested_total',
      'agent_sessions_interrupts_delivered_total',
      'agent_sessions_interrupt_latency_seconds',
      'agent_sessions_lock_wait_seconds',
      'agent_sessions_lock_conflicts_total',
      'agent_sessions_lock_timeouts_total',
      'agent_sessions_sweep_actions_total',
      'agent_sessions_process_cpu_seconds_total',
      'agent_sessions_nodejs_eventloop_lag_seconds',
    ]) {
      expect(text, name).toContain(`# TYPE ${name} `);
    }
    // Every series of ours carries the prefix; no Redis or broker here, so none of theirs.
    for (const m of text.matchAll(/^# TYPE (\S+)/gm)) expect(m[1]).toMatch(/^agent_sessions_/);
    expect(text).not.toContain('agent_sessions_redis_breaker_state');
    expect(text).not.toContain('agent_sessions_outbox_backlog');
  });

  it('counts a request under its route pattern, never the raw id', async () => {
    const id = await createSession(base);
    const before = sample(await scrape(base), 'agent_sessions_http_requests_total', {
      method: 'GET',
      route: '/v1/sessions/:id',
      status_code: '200',
    }) ?? 0;
    expect((await fetch(`${base}/v1/sessions/${id}`, { headers: auth })).status).toBe(200);
    expect((await fetch(`${base}/v1/sessions/${id}`, { headers: auth })).status).toBe(200);
    expect((await fetch(`${base}/no/such/route/${id}`)).status).toBe(404);
    const text = await scrape(base);
    const labels = { method: 'GET', route: '/v1/sessions/:id', status_code: '200' };
    expect(sample(text, 'agent_sessions_http_requests_total', labels)).toBe(before + 2);
    expect(sample(text, 'agent_sessions_http_request_duration_seconds_count', labels)).toBe(before + 2);
    expect(sample(text, 'agent_sessions_http_requests_total', { route: 'unmatched', status_code: '404' })).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'agent_sessions_http_requests_total', { method: 'POST', route: '/v1/sessions', status_code: '201' })).toBeGreaterThanOrEqual(1);
    expect(text).not.toContain(id);
    // A literal ':' in a path reads as documented, not as the router stores it.
    await fetch(`${base}/v1/sessions:batch-get`, { method: 'POST', headers: json, body: JSON.stringify({ ids: [id] }) });
    expect(sample(await scrape(base), 'agent_sessions_http_requests_total', { route: '/v1/sessions:batch-get' })).toBe(1);
  });

  it('counts the embedded cache tier and reads that went to the database', async () => {
    const id = await createSession(base);
    const before = await scrape(base);
    await sessions.get(id);
    await sessions.find('00000000-0000-4000-8000-000000000000');
    const after = await scrape(base);
    const delta = (name: string, tier: string) => (sample(after, name, { tier }) ?? 0) - (sample(before, name, { tier }) ?? 0);
    expect(delta('agent_sessions_cache_hits_total', 'memory')).toBe(1);
    expect(delta('agent_sessions_cache_misses_total', 'memory')).toBe(1);
    expect(delta('agent_sessions_cache_misses_total', 'postgres')).toBe(1);
    expect(sample(after, 'agent_sessions_cache_entries', { tier: 'memory' })).toBeGreaterThanOrEqual(1);
  });

  it('counts grouped writes: the statements sent and the writes they carried', async () => {
    const before = await scrape(base);
    const created = await Promise.all(Array.from({ length: 40 }, () => sessions.create({ title: 'grouped' })));
    await Promise.all(created.map((s) => sessions.incrementCounters(s.id, { totalTurns: 1 })));
    const after = await scrape(base);
    for (const write of ['create', 'increment']) {
      const delta = (name: string) => (sample(after, name, { write }) ?? 0) - (sample(before, name, { write }) ?? 0);
      expect(delta('agent_sessions_write_group_writes_total'), write).toBe(40);
      // Forty writes at once cannot each have gone alone: at most four statements are in flight.
      expect(delta('agent_sessions_write_group_statements_total'), write).toBeGreaterThanOrEqual(1);
      expect(delta('agent_sessions_write_group_statements_total'), write).toBeLessThan(40);
    }
  });

  it('observes the latency of an interrupt from the request to the abort of the run', async () => {
    const id = await createSession(base);
    const start = await fetch(`${base}/v1/sessions/${id}/runs`, {
      method: 'POST',
      headers: json,
      body: JSON.stringify({ input: { words: 1_000, delay_ms: 20 } }),
    });
    expect(start.status).toBe(201);
    await waitFor(async () => sample(await scrape(base), 'agent_sessions_runs_active', { state: 'running' }) === 1, 'the run to be active');
    const interrupted = await fetch(`${base}/v1/sessions/${id}/interrupt`, { method: 'POST', headers: auth });
    expect(interrupted.status).toBe(202);
    const text = await waitFor(async () => {
      const t = await scrape(base);
      const finished = sample(t, 'agent_sessions_runs_finished_total', { status: 'interrupted', reason: 'interrupted' }) ?? 0;
      return finished >= 1 && sample(t, 'agent_sessions_runs_active', { state: 'running' }) === 0 ? t : null;
    }, 'the interrupted run to be finalized and gone');
    expect(sample(text, 'agent_sessions_interrupts_requested_total')).toBe(1);
    // Delivered by the signal, unless the owner's heartbeat read the flag first.
    const paths = ['signal', 'heartbeat'];
    const sum = (name: string) => paths.reduce((n, via) => n + (sample(text, name, { via }) ?? 0), 0);
    expect(sum('agent_sessions_interrupts_delivered_total')).toBe(1);
    expect(sum('agent_sessions_interrupt_latency_seconds_count')).toBe(1);
    expect(sum('agent_sessions_interrupt_latency_seconds_sum')).toBeGreaterThanOrEqual(0);
    expect(sample(text, 'agent_sessions_interrupts_delivered_total', { via: 'before_start' })).toBe(0);
  });

  it('shows open SSE connections by stream', async () => {
    const controller = new AbortController();
    const res = await fetch(`${base}/v1/events`, { headers: auth, signal: controller.signal });
    expect(res.status).toBe(200);
    await waitFor(async () => sample(await scrape(base), 'agent_sessions_sse_connections', { stream: 'events' }) === 1, 'one open feed');
    controller.abort();
    await res.body?.cancel().catch(() => undefined);
    await waitFor(async () => sample(await scrape(base), 'agent_sessions_sse_connections', { stream: 'events' }) === 0, 'the feed closed');
    expect(sample(await scrape(base), 'agent_sessions_sse_connections', { stream: 'run' })).toBe(0);
  });

  it('counts lock waits, conflicts and timeouts', async () => {
    const id = await createSession(base);
    const before = await scrape(base);
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let acquired!: () => void;
    const holding = new Promise<void>((r) => (acquired = r));
    const first = sessions.withSessionLock(id, async () => {
      acquired();
      await held;
    });
    await holding;
    await expect(sessions.withSessionLock(id, async () => undefined, { timeoutMs: 60 })).rejects.toMatchObject({ code: 'lock_timeout' });
    release();
    await first;
    const after = await scrape(base);
    const delta = (name: string, labels: Record<string, string> = {}) => (sample(after, name, labels) ?? 0) - (sample(before, name, labels) ?? 0);
    expect(delta('agent_sessions_lock_timeouts_total')).toBe(1);
    expect(delta('agent_sessions_lock_conflicts_total')).toBeGreaterThanOrEqual(1);
    expect(delta('agent_sessions_lock_wait_seconds_count', { outcome: 'acquired' })).toBe(1);
    expect(delta('agent_sessions_lock_wait_seconds_count', { outcome: 'timeout' })).toBe(1);
  });

  it('exposes the registry to library users', async () => {
    const text = await sessions.metrics.registry.metrics();
    expect(text).toContain('agent_sessions_http_requests_total');
    expect(sessions.metrics.registry.contentType).toMatch(/^text\/plain/);
  });
});

describe('metrics access (embedded)', () => {
  const TOKEN = 'scrape-token-0123456789abcdef';
  let guarded: { sessions: Sessions; app: FastifyInstance; base: string };
  let disabled: { sessions: Sessions; app: FastifyInstance; base: string };

  beforeAll(async () => {
    const open = async (env: Record<string, string>) => {
      const sessions = await createSessions({ env: { DATA_DIR: ':memory:', ADMIN_API_KEY: ADMIN, RUN_SWEEP_INTERVAL_MS: '0', ...env } });
      return { sessions, ...(await listen(sessions)) };
    };
    // Two instances in one process: each has its own registry, nothing is registered twice.
    [guarded, disabled] = await Promise.all([open({ METRICS_TOKEN: TOKEN }), open({ METRICS_ENABLED: 'false' })]);
  });

  afterAll(async () => {
    for (const x of [guarded, disabled]) {
      await x?.app.close();
      await x?.sessions.close();
    }
  });

  it('requires METRICS_TOKEN as a bearer token when it is set', async () => {
    const refused: Record<string, string>[] = [{}, { authorization: 'Bearer wrong-token-0123456789' }, { authorization: `Bearer ${ADMIN}` }, { 'x-api-key': TOKEN }];
    for (const headers of refused) {
      const res = await fetch(`${guarded.base}/metrics`, { headers });
      expect(res.status).toBe(401);
      expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      expect(res.headers.get('www-authenticate')).toMatch(/^Bearer/);
      expect(await res.json()).toMatchObject({ status: 401, code: 'unauthorized' });
    }
    const text = await scrape(guarded.base, { authorization: `Bearer ${TOKEN}` });
    expect(text).toContain('agent_sessions_http_requests_total');
    // The token never shows in the configuration the service exposes.
    expect(guarded.sessions.config.metricsToken).toBe('[redacted]');
  });

  it('serves no /metrics and times nothing when METRICS_ENABLED=false', async () => {
    const res = await fetch(`${disabled.base}/metrics`);
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ code: 'route_not_found' });
    expect((await fetch(`${disabled.base}/health`)).status).toBe(200);
    const text = await disabled.sessions.metrics.registry.metrics();
    expect(sample(text, 'agent_sessions_http_requests_total', { route: '/health' })).toBeUndefined();
    // The process series are left out too; the service's own stay for library use.
    expect(text).not.toContain('agent_sessions_process_cpu_seconds_total');
    expect(text).toContain('agent_sessions_cache_hits_total');
  });

  it('keeps the registries of two Sessions in one process apart', async () => {
    const a = guarded.sessions.metrics.registry;
    const b = disabled.sessions.metrics.registry;
    expect(a).not.toBe(b);
    const name = 'agent_sessions_http_requests_total';
    expect(a.getSingleMetric(name)).not.toBe(b.getSingleMetric(name));
    const third = await createSessions({ env: { DATA_DIR: ':memory:', RUN_SWEEP_INTERVAL_MS: '0' } });
    try {
      // Shares the process series with the first, registers everything else anew.
      expect(await third.metrics.registry.metrics()).toContain('agent_sessions_process_cpu_seconds_total');
      expect(await a.metrics()).toContain('agent_sessions_process_cpu_seconds_total');
    } finally {
      await third.close();
    }
  });
});

const suite = 'http/metrics/postgres+redis';
const ready = requireServices(['postgres', 'redis'], suite);

describe.skipIf(!ready)(suite, () => {
  let db: FreshDatabase;
  let server: Sessions;
  let peer: Sessions;
  let pgOnly: Sessions;
  let app: FastifyInstance;
  let base: string;

  beforeAll(async () => {
    db = await freshDatabase();
    const env = {
      DATABASE_URL: db.url,
      REDIS_URL: serviceUrl('redis'),
      KEY_PREFIX: uniqueKeyPrefix(),
      ADMIN_API_KEY: ADMIN,
      RUN_SWEEP_INTERVAL_MS: '0',
      SWEEP_INTERVAL_MS: '0',
      INSTANCE_ID: 'server',
    };
    server = await createSessions({ env });
    peer = await createSessions({ env: { ...env, INSTANCE_ID: 'peer' }, agent: demoRunner({ wordDelayMs: 20 }) });
    // Writes behind the Redis tier's back: this instance uses no Redis.
    pgOnly = await createSessions({ env: { DATABASE_URL: db.url, RUN_SWEEP_INTERVAL_MS: '0', SWEEP_INTERVAL_MS: '0' } });
    ({ app, base } = await listen(server));
  });

  afterAll(async () => {
    await app?.close();
    for (const s of [server, peer, pgOnly]) await s?.close();
    await db?.drop();
  });

  it('counts hits and misses by tier (near, redis, postgres) and the reads that fell back to PostgreSQL', async () => {
    await waitFor(async () => sample(await scrape(base), 'agent_sessions_redis_breaker_state') === 0, 'the breaker closed');
    const get = async (id: string) => (await fetch(`${base}/v1/sessions/${id}`, { headers: auth })).status;
    // The near cache is consulted once the invalidation subscriber is live.
    const warm = await createSession(base);
    await waitFor(async () => {
      const hits = sample(await scrape(base), 'agent_sessions_cache_hits_total', { tier: 'near' }) ?? 0;
      expect(await get(warm)).toBe(200);
      return (sample(await scrape(base), 'agent_sessions_cache_hits_total', { tier: 'near' }) ?? 0) > hits;
    }, 'a near-cache hit');
    const inRedis = (await peer.create({ title: 'cached by the peer' })).id;
    const notInRedis = (await pgOnly.create({ title: 'written without Redis' })).id;
    const before = await scrape(base);
    expect(await get(inRedis)).toBe(200); // near miss, Redis hit
    expect(await get(notInRedis)).toBe(200); // near miss, Redis miss, PostgreSQL hit
    expect(await get(notInRedis)).toBe(200); // near hit (the read refilled both tiers)
    expect(await get('00000000-0000-4000-8000-000000000000')).toBe(404); // missed everywhere
    const after = await scrape(base);
    const delta = (name: string, labels: Record<string, string>) => (sample(after, name, labels) ?? 0) - (sample(before, name, labels) ?? 0);
    expect(delta('agent_sessions_cache_hits_total', { tier: 'near' })).toBeGreaterThanOrEqual(1);
    expect(delta('agent_sessions_cache_misses_total', { tier: 'near' })).toBeGreaterThanOrEqual(3);
    expect(delta('agent_sessions_cache_hits_total', { tier: 'redis' })).toBeGreaterThanOrEqual(1);
    expect(delta('agent_sessions_cache_misses_total', { tier: 'redis' })).toBeGreaterThanOrEqual(2);
    expect(delta('agent_sessions_cache_hits_total', { tier: 'postgres' })).toBeGreaterThanOrEqual(1);
    expect(delta('agent_sessions_cache_misses_total', { tier: 'postgres' })).toBeGreaterThanOrEqual(1);
    expect(delta('agent_sessions_postgres_fallbacks_total', { reason: 'redis_miss' })).toBeGreaterThanOrEqual(2);
    expect(sample(after, 'agent_sessions_postgres_fallbacks_total', { reason: 'redis_unavailable' })).toBeDefined();
    expect(sample(after, 'agent_sessions_redis_breaker_state')).toBe(0);
    expect(after).toContain('# TYPE agent_sessions_redis_short_circuited_total counter');
  });

  it('observes, on the owner, the latency of an interrupt sent from another instance', async () => {
    const id = (await peer.create({})).id;
    const run = await peer.runs.start(id, undefined, { input: { words: 1_000, delay_ms: 20 } });
    expect(run.status).toBe('running');
    const res = await fetch(`${base}/v1/sessions/${id}/interrupt`, { method: 'POST', headers: auth });
    expect(res.status).toBe(202);
    expect((await peer.runs.wait(id, run.id)).status).toBe('interrupted');
    const owner = await peer.metrics.registry.metrics();
    const delivered = ['signal', 'heartbeat'].reduce((n, via) => n + (sample(owner, 'agent_sessions_interrupt_latency_seconds_count', { via }) ?? 0), 0);
    expect(delivered).toBe(1);
    expect(sample(owner, 'agent_sessions_runs_finished_total', { status: 'interrupted', reason: 'interrupted' })).toBe(1);
    // The request was counted where it was made.
    expect(sample(await scrape(base), 'agent_sessions_interrupts_requested_total')).toBe(1);
    expect(sample(owner, 'agent_sessions_interrupts_requested_total')).toBe(0);
  });
});

const eventsSuite = 'http/metrics/postgres+nats';
const eventsReady = requireServices(['postgres', 'nats'], eventsSuite);

describe.skipIf(!eventsReady)(eventsSuite, () => {
  let db: FreshDatabase;
  let sessions: Sessions;
  const names = uniqueNatsNames();

  beforeAll(async () => {
    db = await freshDatabase();
    sessions = await createSessions({
      env: {
        DATABASE_URL: db.url,
        NATS_URL: serviceUrl('nats'),
        NATS_STREAM: names.stream,
        NATS_SUBJECT_PREFIX: names.subjectPrefix,
        RUN_SWEEP_INTERVAL_MS: '0',
        SWEEP_INTERVAL_MS: '0',
      },
    });
  });

  afterAll(async () => {
    await sessions?.close();
    await deleteStream(serviceUrl('nats'), names.stream).catch(() => undefined);
    await db?.drop();
  });

  it('reports the relay: events published, backlog and the age of the oldest unpublished event', async () => {
    await sessions.create({ title: 'an event to publish' });
    const text = await waitFor(async () => {
      const t = await sessions.metrics.registry.metrics();
      return (sample(t, 'agent_sessions_outbox_published_total') ?? 0) >= 1 && sample(t, 'agent_sessions_outbox_backlog') === 0 ? t : null;
    }, 'the event published');
    expect(sample(text, 'agent_sessions_outbox_oldest_unpublished_age_seconds')).toBe(0);
    expect(sample(text, 'agent_sessions_outbox_publish_failures_total')).toBe(0);
    expect(sample(text, 'agent_sessions_outbox_duplicates_total')).toBe(0);
  });
});
