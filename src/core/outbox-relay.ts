/**
 * The outbox relay: runs on every instance, moves committed events from the outbox to the
 * broker, at least once and in commit order per session. Woken when events commit (NOTIFY,
 * any instance) or when the broker comes back; a slow poll catches anything missed. While the
 * broker is down it backs off exponentially up to a cap and the events wait in the outbox.
 */
import type { EventEnvelope, EventPublisher, OutboxStore } from './ports.js';
import { sessionKey } from './ids.js';
import { errorType, NO_TRACING, type Tracing } from './tracing.js';

export interface OutboxRelayOptions {
  store: OutboxStore;
  publisher: EventPublisher;
  /** Events claimed per transaction. */
  batchSize?: number;
  /** Fallback poll when no wake-up arrives (ms). */
  pollIntervalMs?: number;
  /** First and largest wait after a failure (ms). */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  onError?: (err: unknown, failures: number) => void;
  /** Each batch published is a span (`outbox.publish`), the parent of the broker's publish spans. */
  tracing?: Tracing;
}

export interface RelayStats {
  running: boolean;
  /** Events the broker stored as new. */
  published: number;
  /** Events the broker already had (a republish after a crash between publish and mark). */
  duplicates: number;
  /** Failed attempts since start, and consecutive ones now (0 when healthy). */
  failures: number;
  consecutiveFailures: number;
  lastPublishedAt: string | null;
}

/**
 * Splits a batch (in id order) into waves holding at most one event per session: wave k has
 * each session's k-th event. A wave is published concurrently and fully acknowledged before
 * the next starts, so a session's later event never reaches the broker before an earlier one.
 */
export function publishWaves(events: readonly EventEnvelope[]): EventEnvelope[][] {
  const waves: EventEnvelope[][] = [];
  const depth = new Map<string, number>();
  for (const e of events) {
    // Ids are unique per tenant: a session is its tenant and id.
    const key = e.sessionId === null ? null : sessionKey(e.tenantId, e.sessionId);
    const k = key === null ? 0 : (depth.get(key) ?? 0);
    if (key !== null) depth.set(key, k + 1);
    (waves[k] ??= []).push(e);
  }
  return waves;
}

export class OutboxRelay {
  private readonly store: OutboxStore;
  private readonly publisher: EventPublisher;
  private readonly batchSize: number;
  private readonly pollIntervalMs: number;
  private readonly minBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly onError: (err: unknown, failures: number) => void;
  private readonly tracing: Tracing;
  private readonly counters: RelayStats = {
    running: false,
    published: 0,
    duplicates: 0,
    failures: 0,
    consecutiveFailures: 0,
    lastPublishedAt: null,
  };
  private controller: AbortController | null = null;
  private loop: Promise<void> | null = null;
  private wake: (() => void) | null = null;
  private woken = false;
  private unlisten: (() => Promise<void>) | null = null;
  private offAvailable: (() => void) | null = null;

  constructor(options: OutboxRelayOptions) {
    this.store = options.store;
    this.publisher = options.publisher;
    this.batchSize = options.batchSize ?? 100;
    this.pollIntervalMs = options.pollIntervalMs ?? 5_000;
    this.minBackoffMs = options.minBackoffMs ?? 100;
    this.maxBackoffMs = options.maxBackoffMs ?? 10_000;
    this.onError = options.onError ?? (() => undefined);
    this.tracing = options.tracing ?? NO_TRACING;
  }

  stats(): RelayStats {
    return { ...this.counters, running: this.loop !== null };
  }

  /** Starts relaying. Idempotent. */
  async start(): Promise<void> {
    if (this.loop) return;
    const controller = new AbortController();
    this.controller = controller;
    this.offAvailable = this.publisher.onAvailable(() => this.kick(true));
    try {
      this.unlisten = await this.store.onAppend(() => this.kick(false));
    } catch (err) {
      // The slow poll still finds every event; NOTIFY only makes it prompt.
      this.onError(err, this.counters.consecutiveFailures);
    }
    this.loop = this.run(controller.signal);
  }

  /** Stops after the batch in flight. Idempotent; concurrent calls share one stop. */
  async close(): Promise<void> {
    this.controller?.abort();
    this.wake?.();
    const loop = this.loop;
    this.loop = null;
    await loop;
    this.offAvailable?.();
    this.offAvailable = null;
    const unlisten = this.unlisten;
    this.unlisten = null;
    await unlisten?.().catch(() => undefined);
  }

  /** Asks for a pass now (events committed in this process). */
  notify(): void {
    this.kick(false);
  }

  /** Claims, publishes and marks one batch; resolves to the number of events claimed. */
  async relayOnce(signal?: AbortSignal): Promise<number> {
    let failure: unknown = null;
    const { claimed } = await this.store.relay(this.batchSize, async (events) => {
      if (!this.tracing.enabled) {
        const { acked, error } = await this.publishAll(events, signal);
        failure = error;
        return acked;
      }
      // A trace of its own: the relay works for no request (the events' writers are long gone).
      return this.tracing.span('outbox.publish', { newTrace: true, attributes: { 'agent_sessions.events': events.length } }, async (span) => {
        const { acked, error } = await this.publishAll(events, signal);
        failure = error;
        if (error !== null) span.fail(errorType(error));
        return acked;
      });
    });
    if (failure !== null) throw failure;
    return claimed;
  }

  private kick(resetBackoff: boolean): void {
    if (resetBackoff) this.counters.consecutiveFailures = 0;
    this.woken = true;
    this.wake?.();
  }

  private async publishAll(
    events: readonly EventEnvelope[],
    signal: AbortSignal | undefined,
  ): Promise<{ acked: number[]; error: unknown }> {
    const acked: number[] = [];
    for (const wave of publishWaves(events)) {
      const results = await Promise.allSettled(wave.map((e) => this.publisher.publish(e, { signal })));
      let error: unknown = null;
      for (const r of results) {
        if (r.status === 'fulfilled') {
          acked.push(r.value.id);
          if (r.value.duplicate) this.counters.duplicates++;
          else this.counters.published++;
        } else {
          error ??= r.reason;
        }
      }
      if (acked.length > 0) this.counters.lastPublishedAt = new Date().toISOString();
      // Later waves hold later events of sessions whose earlier event may not be stored.
      if (error !== null) return { acked, error };
    }
    return { acked, error: null };
  }

  private async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      this.woken = false;
      let wait = this.pollIntervalMs;
      try {
        const claimed = await this.relayOnce(signal);
        this.counters.consecutiveFailures = 0;
        // A full batch means more may be waiting: go again at once.
        if (claimed >= this.batchSize) continue;
      } catch (err) {
        if (signal.aborted) break;
        this.counters.failures++;
        const n = ++this.counters.consecutiveFailures;
        this.onError(err, n);
        const backoff = Math.min(this.maxBackoffMs, this.minBackoffMs * 2 ** Math.min(n - 1, 30));
        // Jitter, so relays on many instances do not retry in lockstep.
        wait = backoff / 2 + Math.random() * (backoff / 2);
      }
      const failing = this.counters.consecutiveFailures > 0;
      // While failing, a commit does not cut the backoff short (only the broker's return does).
      if (this.woken && !failing) continue;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, wait);
        signal.addEventListener('abort', done, { once: true });
        function done() {
          clearTimeout(timer);
          signal.removeEventListener('abort', done);
          resolve();
        }
        this.wake = () => {
          if (!failing || this.counters.consecutiveFailures === 0) done();
        };
      });
      this.wake = null;
    }
  }
}
