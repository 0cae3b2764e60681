/**
 * Prometheus metrics of one `Sessions` (SPEC §12). Each instance has a registry of its own,
 * so several in one process (tests, a library user with two stores) never collide; the Node
 * process metrics are collected once per process and shown in every registry. All series
 * are named `agent_sessions_*`; docs/observability.md lists them with labels and meaning.
 *
 * Counts that components already keep (cache tiers, circuit breaker, relay, sweeps, runs on
 * this instance) are read when the registry is scraped, so the hot paths count nothing
 * twice. The core reports what only it sees (repository reads, lock waits, interrupts)
 * through its telemetry hooks (src/core/telemetry.ts), which this class implements.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry, type Metric } from 'prom-client';
import type { OutboxLag } from '../../core/ports.js';
import type { RelayStats } from '../../core/outbox-relay.js';
import type { InterruptPath, RunTelemetry, SessionTelemetry } from '../../core/telemetry.js';

export const METRIC_PREFIX = 'agent_sessions_';

/** The SSE streams whose open connections are counted. */
export type SseStream = 'run' | 'events';

interface TierStats {
  hits: number;
  misses: number;
  size: number;
  errors?: number;
}

interface SweepCounts {
  passes: number;
  affected: number;
  errors: number;
}

/** What the metrics read when scraped. A null part: this instance has no such component. */
export interface MetricsSources {
  cacheStats(): Record<string, TierStats>;
  /** Lookups passed on to PostgreSQL by reason (redis_miss, redis_unavailable). */
  fallbackStats(): Record<string, number>;
  breaker: { readonly state: string; readonly openings: number; readonly shortCircuited: number } | null;
  runs(): { running: number; queued: number };
  relay: (() => RelayStats) | null;
  outboxLag: (() => Promise<OutboxLag>) | null;
  sweeps(): Record<string, SweepCounts>;
  /** Session writes sent to PostgreSQL in groups, by kind of write (create, increment). */
  writeGroups(): Record<string, { groups: number; calls: number }>;
}

export interface SessionsMetricsOptions {
  /** Include the Node process metrics (CPU, memory, event loop, GC). Default true. */
  processMetrics?: boolean;
  /** A bearer token GET /metrics requires; null: the route is open (like /health). */
  scrapeToken?: string | null;
  /** Longest wait for the outbox query during a scrape before its gauges read NaN (default 2 s). */
  outboxQueryTimeoutMs?: number;
}

/** Seconds; requests served from memory take well under a millisecond. */
const HTTP_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Seconds; the target is p99 ≤ 50 ms with Redis, one heartbeat (a few seconds) without. */
const INTERRUPT_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
/** Seconds; waiters back off from 10 ms to 500 ms and give up after 5 s by default. */
const LOCK_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

const BREAKER_STATES: Record<string, number> = { closed: 0, open: 1, recovering: 2, draining: 2 };
const INTERRUPT_PATHS: readonly InterruptPath[] = ['signal', 'heartbeat', 'before_start'];

/** The process metrics: one set of collectors (GC observer, event-loop monitor) per process. */
let processMetrics: Metric[] | null = null;

function sharedProcessMetrics(): Metric[] {
  if (!processMetrics) {
    const registry = new Registry();
    collectDefaultMetrics({ register: registry, prefix: METRIC_PREFIX });
    processMetrics = registry.getMetricsAsArray() as unknown as Metric[];
  }
  return processMetrics;
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/** Prometheus metrics of one instance; it is what `sessions.metrics` shows users (its registry, `text()`). */
export class SessionsMetrics implements SessionTelemetry, RunTelemetry {
  /** The registry to expose (GET /metrics serves it; a library user can mount it anywhere). */
  readonly registry = new Registry();
  private readonly scrapeTokenHash: Buffer | null;
  private readonly outboxQueryTimeoutMs: number;
  private sources: MetricsSources | null = null;
  private readonly repositoryReads = { hits: 0, misses: 0 };
  private lag: { at: number; value: Promise<OutboxLag | null> } | null = null;

  private readonly httpRequests: Counter<'method' | 'route' | 'status_code'>;
  private readonly httpDuration: Histogram<'method' | 'route' | 'status_code'>;
  private readonly sseConnections: Gauge<'stream'>;
  private readonly lockWait: Histogram<'outcome'>;
  private readonly lockConflicts: Counter;
  private readonly lockTimeouts: Counter;
  private readonly locksLost: Counter;
  private readonly interruptsRequested: Counter;
  private readonly interruptsDelivered: Counter<'via'>;
  private readonly interruptLatency: Histogram<'via'>;
  private readonly runsFinished: Counter<'status' | 'reason'>;

  constructor(options: SessionsMetricsOptions = {}) {
    this.scrapeTokenHash = options.scrapeToken ? sha256(options.scrapeToken) : null;
    this.outboxQueryTimeoutMs = options.outboxQueryTimeoutMs ?? 2_000;
    if (options.processMetrics ?? true) for (const m of sharedProcessMetrics()) this.registry.registerMetric(m);
    const registers = [this.registry];
    const name = (n: string) => `${METRIC_PREFIX}${n}`;

    this.httpRequests = new Counter({
      name: name('http_requests_total'),
      help: 'HTTP requests answered, by method, route pattern and status code',
      labelNames: ['method', 'route', 'status_code'],
      registers,
    });
    this.httpDuration = new Histogram({
      name: name('http_request_duration_seconds'),
      help: 'Time from receiving a request to sending its response (SSE streams are not timed)',
      labelNames: ['method', 'route', 'status_code'],
      buckets: HTTP_BUCKETS,
      registers,
    });
    this.sseConnections = new Gauge({
      name: name('sse_connections'),
      help: 'Server-Sent Events connections open on this instance, by stream (run output, events feed)',
      labelNames: ['stream'],
      registers,
    });
    for (const stream of ['run', 'events'] as const) this.sseConnections.set({ stream }, 0);

    this.lockWait = new Histogram({
      name: name('lock_wait_seconds'),
      help: 'Time withSessionLock waited for its lease, by outcome (acquired, timeout)',
      labelNames: ['outcome'],
      buckets: LOCK_BUCKETS,
      registers,
    });
    this.lockConflicts = new Counter({
      name: name('lock_conflicts_total'),
      help: 'withSessionLock attempts that found the lease held by another caller',
      registers,
    });
    this.lockTimeouts = new Counter({
      name: name('lock_timeouts_total'),
      help: 'withSessionLock calls that gave up with lock_timeout',
      registers,
    });
    this.locksLost = new Counter({
      name: name('locks_lost_total'),
      help: 'Leases lost while their function ran (renewal failed); the function’s signal fired',
      registers,
    });

    this.interruptsRequested = new Counter({
      name: name('interrupts_requested_total'),
      help: 'Runs this instance asked to stop (interrupt, or a start with if_busy=interrupt)',
      registers,
    });
    this.interruptsDelivered = new Counter({
      name: name('interrupts_delivered_total'),
      help: 'Interrupts that aborted a run executing on this instance, by path (signal, heartbeat, before_start)',
      labelNames: ['via'],
      registers,
    });
    this.interruptLatency = new Histogram({
      name: name('interrupt_latency_seconds'),
      help: 'From an interrupt request (any instance) to the abort of the run on its owner, this instance',
      labelNames: ['via'],
      buckets: INTERRUPT_BUCKETS,
      registers,
    });
    for (const via of INTERRUPT_PATHS) this.interruptsDelivered.inc({ via }, 0);
    this.runsFinished = new Counter({
      name: name('runs_finished_total'),
      help: 'Runs this instance finalized (executed here, or swept as orphans), by status and reason',
      labelNames: ['status', 'reason'],
      registers,
    });
  }

  /** The media type of `text()`: Prometheus text exposition format. */
  get contentType(): string {
    return this.registry.contentType;
  }

  /** Every metric in Prometheus text format. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  /** Whether GET /metrics requires a bearer token. */
  get scrapeTokenRequired(): boolean {
    return this.scrapeTokenHash !== null;
  }

  /** Whether `presented` is the scrape token (constant time). True when none is required. */
  acceptsScrapeToken(presented: string | null): boolean {
    if (!this.scrapeTokenHash) return true;
    return presented !== null && timingSafeEqual(sha256(presented), this.scrapeTokenHash);
  }

  // ---------------------------------------------------------------------------------------
  // HTTP (called by the server)

  /** One answered request; `seconds` is null for streams, whose duration is not a latency. */
  observeRequest(method: string, route: string, statusCode: number, seconds: number | null): void {
    const labels = { method, route, status_code: statusCode };
    this.httpRequests.inc(labels);
    if (seconds !== null) this.httpDuration.observe(labels, seconds);
  }

  /** Counts an open SSE connection; call the function returned when it closes (more calls do nothing). */
  sseOpened(stream: SseStream): () => void {
    this.sseConnections.inc({ stream });
    let open = true;
    return () => {
      if (!open) return;
      open = false;
      this.sseConnections.dec({ stream });
    };
  }

  // ---------------------------------------------------------------------------------------
  // Core telemetry

  repositoryRead(found: number, missing: number): void {
    this.repositoryReads.hits += found;
    this.repositoryReads.misses += missing;
  }

  lockAcquired(waitSeconds: number): void {
    this.lockWait.observe({ outcome: 'acquired' }, waitSeconds);
  }

  lockConflict(): void {
    this.lockConflicts.inc();
  }

  lockTimedOut(waitSeconds: number): void {
    this.lockWait.observe({ outcome: 'timeout' }, waitSeconds);
    this.lockTimeouts.inc();
  }

  lockLost(): void {
    this.locksLost.inc();
  }

  interruptRequested(runs: number): void {
    this.interruptsRequested.inc(runs);
  }

  interruptDelivered(via: InterruptPath, latencySeconds: number | null): void {
    this.interruptsDelivered.inc({ via });
    if (latencySeconds !== null) this.interruptLatency.observe({ via }, latencySeconds);
  }

  runEnded(status: string, reason: string): void {
    this.runsFinished.inc({ status, reason });
  }

  // ---------------------------------------------------------------------------------------
  // Read when scraped

  /**
   * Connects the series read at scrape time to the components of the Sessions that owns
   * this registry. Series of components it lacks (Redis, a broker) are not registered.
   */
  attach(sources: MetricsSources): void {
    if (this.sources) throw new Error('metrics sources are already attached');
    this.sources = sources;
    const registers = [this.registry];
    const name = (n: string) => `${METRIC_PREFIX}${n}`;
    const tiers = (): Array<[string, TierStats]> => [
      ...Object.entries(sources.cacheStats()),
      ['postgres', { ...this.repositoryReads, size: 0 }],
    ];

    const counter = <L extends string>(n: string, help: string, labelNames: L[], read: () => Array<[Partial<Record<L, string>>, number]>) =>
      counterFrom(registers, name(n), help, labelNames, read);

    counter(
      'cache_hits_total',
      'Session lookups a tier answered (postgres: found in the database after the caches missed)',
      ['tier'],
      () => tiers().map(([tier, s]) => [{ tier }, s.hits]),
    );
    counter(
      'cache_misses_total',
      'Session lookups a tier could not answer (postgres: the session does not exist)',
      ['tier'],
      () => tiers().map(([tier, s]) => [{ tier }, s.misses]),
    );
    new Gauge({
      name: name('cache_entries'),
      help: 'Entries held by an in-process cache tier',
      labelNames: ['tier'],
      registers,
      collect() {
        this.reset();
        for (const [tier, s] of Object.entries(sources.cacheStats())) if (tier !== 'redis') this.set({ tier }, s.size);
      },
    });

    if (sources.breaker) {
      const breaker = sources.breaker;
      counter(
        'cache_errors_total',
        'Calls to a cache tier that failed (error, timeout, circuit open)',
        ['tier'],
        () => Object.entries(sources.cacheStats()).flatMap(([tier, s]) => (s.errors === undefined ? [] : [[{ tier }, s.errors]])),
      );
      counter(
        'postgres_fallbacks_total',
        'Session lookups served by PostgreSQL because Redis missed or could not be asked',
        ['reason'],
        () => Object.entries(sources.fallbackStats()).map(([reason, n]) => [{ reason }, n]),
      );
      new Gauge({
        name: name('redis_breaker_state'),
        help: 'Redis circuit breaker: 0 closed, 1 open (calls fail fast), 2 half-open (recovering or draining)',
        registers,
        collect() {
          this.set(BREAKER_STATES[breaker.state] ?? 1);
        },
      });
      counter('redis_breaker_openings_total', 'Times the Redis circuit breaker opened', [], () => [[{}, breaker.openings]]);
      counter('redis_short_circuited_total', 'Redis calls failed at once because the circuit was open', [], () => [
        [{}, breaker.shortCircuited],
      ]);
    }

    new Gauge({
      name: name('runs_active'),
      help: 'Runs on this instance, by state (running: executing here; queued: waiting behind another run)',
      labelNames: ['state'],
      registers,
      collect() {
        const r = sources.runs();
        this.set({ state: 'running' }, r.running);
        this.set({ state: 'queued' }, r.queued);
      },
    });

    const sweeps = () => Object.entries(sources.sweeps());
    counter(
      'sweep_actions_total',
      'Rows a background sweep acted on (sessions warned, expired, purged; events pruned; runs finalized)',
      ['task'],
      () => sweeps().map(([task, s]) => [{ task }, s.affected]),
    );
    counter('sweep_passes_total', 'Passes of each background sweep task', ['task'], () =>
      sweeps().map(([task, s]) => [{ task }, s.passes]),
    );
    counter('sweep_errors_total', 'Failed passes of each background sweep task', ['task'], () =>
      sweeps().map(([task, s]) => [{ task }, s.errors]),
    );

    const groups = () => Object.entries(sources.writeGroups());
    counter(
      'write_group_statements_total',
      'Statements that carried grouped session writes (a group of one is a write sent alone)',
      ['write'],
      () => groups().map(([write, g]) => [{ write }, g.groups]),
    );
    counter('write_group_writes_total', 'Session writes those statements carried', ['write'], () =>
      groups().map(([write, g]) => [{ write }, g.calls]),
    );

    if (sources.relay) {
      const relay = sources.relay;
      counter('outbox_published_total', 'Events the relay published to the broker (stored as new)', [], () => [[{}, relay().published]]);
      counter(
        'outbox_duplicates_total',
        'Events the broker already had (republished after a crash between publish and mark)',
        [],
        () => [[{}, relay().duplicates]],
      );
      counter(
        'outbox_publish_failures_total',
        'Failed relay attempts (the events stay in the outbox and are retried)',
        [],
        () => [[{}, relay().failures]],
      );
    }
    if (sources.outboxLag) {
      const read = sources.outboxLag;
      const lag = () => this.outboxLag(read);
      new Gauge({
        name: name('outbox_backlog'),
        help: 'Events not yet published to the broker, all tenants (NaN when the database could not be asked)',
        registers,
        async collect() {
          this.set((await lag())?.backlog ?? Number.NaN);
        },
      });
      new Gauge({
        name: name('outbox_oldest_unpublished_age_seconds'),
        help: 'Age of the oldest event not yet published, all tenants (0 when none; NaN when the database could not be asked)',
        registers,
        async collect() {
          const l = await lag();
          this.set(l === null ? Number.NaN : (l.oldestUnpublishedAgeSeconds ?? 0));
        },
      });
    }
  }

  /** One outbox query per scrape, shared by its two gauges; null when it failed or took too long. */
  private outboxLag(read: () => Promise<OutboxLag>): Promise<OutboxLag | null> {
    const now = performance.now();
    if (this.lag && now - this.lag.at < 1_000) return this.lag.value;
    const value = new Promise<OutboxLag | null>((resolve) => {
      const timer = setTimeout(() => resolve(null), this.outboxQueryTimeoutMs);
      timer.unref();
      read().then(
        (l) => {
          clearTimeout(timer);
          resolve(l);
        },
        () => {
          clearTimeout(timer);
          resolve(null);
        },
      );
    });
    this.lag = { at: now, value };
    return value;
  }
}

/** A counter whose values are read from a component's own counts when scraped. */
function counterFrom<L extends string>(
  registers: Registry[],
  name: string,
  help: string,
  labelNames: L[],
  read: () => Array<[Partial<Record<L, string>>, number]>,
): Counter<L> {
  return new Counter<L>({
    name,
    help,
    labelNames,
    registers,
    collect() {
      this.reset();
      for (const [labels, value] of read()) this.inc(labels, value);
    },
  });
}
