/**
 * The event feed: a tenant's events in id order as an async iterator, resumable by event id,
 * served from the outbox (so it works with no broker). One pump per process samples the
 * gap-free horizon when an event commits anywhere (NOTIFY) or on a slow poll, and wakes the
 * subscribers, which each read their own filtered page up to it. A reader whose cursor is below
 * what the outbox retention pruned gets a `gap` event first.
 */
import { throwIfAborted } from './abort.js';
import { ValidationError } from './errors.js';
import { isSessionId } from './ids.js';
import type { EventEnvelope, EventLog } from './ports.js';
import { DEFAULT_TENANT } from './types.js';
import { GAP_EVENT_TYPE, type GapData } from './runs.js';

export const EVENT_TYPES = [
  'session.created',
  'session.updated',
  'session.status_changed',
  'session.terminated',
  'session.expired',
  'session.timeout_warning',
  'session.deleted',
  'run.queued',
  'run.started',
  'run.completed',
  'run.failed',
  'run.interrupted',
  'run.cancelled',
  'run.restarted',
  'run.input',
  'item.added',
  'item.updated',
] as const;
export type EventType = (typeof EVENT_TYPES)[number];

export type { EventEnvelope } from './ports.js';

/**
 * The notice a feed reader gets, before anything else, when events after its cursor were pruned
 * (OUTBOX_RETENTION_HOURS): type `gap`, id = the last pruned id (`to`), data `{ from, to,
 * reason: 'retention' }`. It is never in the outbox and passes every type filter.
 */
export function gapEnvelope(tenant: string, from: number, to: number): EventEnvelope {
  const data: GapData = { from, to, reason: 'retention' };
  return { id: to, type: GAP_EVENT_TYPE, tenantId: tenant, sessionId: null, occurredAt: new Date().toISOString(), data };
}

export interface SubscribeOptions {
  tenant?: string;
  /** Deliver events with an id greater than this; omitted: only events from now on. */
  after?: number;
  types?: readonly string[];
  sessionId?: string;
  signal?: AbortSignal;
}

export interface EventFeedOptions {
  /** Fallback poll when no NOTIFY arrives (ms). */
  pollIntervalMs?: number;
  /** Events read per query. */
  pageSize?: number;
  onError?: (err: unknown) => void;
}

/** A promise that resolves when `signal` fires or the wait is released. */
class Waiter {
  private release: (() => void) | null = null;
  readonly promise: Promise<void>;
  constructor() {
    this.promise = new Promise((resolve) => {
      this.release = resolve;
    });
  }
  done(): void {
    this.release?.();
  }
}

/** Waits `ms`, or less if `signal` fires or `early` settles; leaves no timer behind. */
function sleep(ms: number, signal: AbortSignal, early: Promise<void>): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
    void early.then(done);
  });
}

export class EventFeed {
  private readonly pollIntervalMs: number;
  private readonly pageSize: number;
  private readonly onError: (err: unknown) => void;
  private horizonValue = -1;
  private subscribers = 0;
  private waiters = new Set<Waiter>();
  private pumping: Promise<void> | null = null;
  private kickPump: Waiter = new Waiter();
  private kicked = false;
  private unlisten: Promise<() => Promise<void>> | null = null;
  private readonly stop = new AbortController();

  constructor(
    private readonly log: EventLog,
    options: EventFeedOptions = {},
  ) {
    this.pollIntervalMs = options.pollIntervalMs ?? 1_000;
    this.pageSize = options.pageSize ?? 500;
    this.onError = options.onError ?? (() => undefined);
  }

  /**
   * The tenant's events, oldest first, with no gap and no duplicate within one iteration.
   * Leaving the loop unsubscribes; an aborted signal ends it with the signal's reason.
   */
  subscribe(options: SubscribeOptions = {}): AsyncIterable<EventEnvelope> {
    const tenant = options.tenant ?? DEFAULT_TENANT;
    const { after, sessionId, signal } = options;
    if (after !== undefined && (!Number.isSafeInteger(after) || after < 0)) {
      throw new ValidationError('after must be a non-negative integer event id', { field: 'after' });
    }
    if (sessionId !== undefined && !isSessionId(sessionId)) {
      throw new ValidationError('session_id is not a session id', { field: 'session_id' });
    }
    const types = options.types && options.types.length > 0 ? [...new Set(options.types)] : undefined;
    for (const t of types ?? []) {
      if (!(EVENT_TYPES as readonly string[]).includes(t)) {
        throw new ValidationError(`unknown event type ${t}`, { field: 'type', allowed: EVENT_TYPES });
      }
    }
    return { [Symbol.asyncIterator]: () => this.iterate(tenant, after, types, sessionId, signal) };
  }

  private async *iterate(
    tenant: string,
    after: number | undefined,
    types: string[] | undefined,
    sessionId: string | undefined,
    signal: AbortSignal | undefined,
  ): AsyncGenerator<EventEnvelope> {
    throwIfAborted(signal);
    if (this.stop.signal.aborted) return;
    this.subscribers++;
    try {
      this.ensurePump();
      let cursor = after ?? (await this.currentHorizon(signal));
      for (;;) {
        throwIfAborted(signal);
        if (this.stop.signal.aborted) return;
        const upTo = this.horizonValue;
        if (upTo > cursor) {
          const { events: page, prunedThrough } = await this.log.read({ tenant, after: cursor, upTo, types, sessionId, limit: this.pageSize });
          // The retention deleted events after the cursor: say so, then go on after them.
          if (prunedThrough > cursor) {
            yield gapEnvelope(tenant, cursor + 1, prunedThrough);
            cursor = prunedThrough;
          }
          for (const event of page) {
            yield event;
            cursor = event.id;
          }
          // A short page means everything up to the horizon that matches was delivered.
          if (page.length < this.pageSize) cursor = Math.max(cursor, upTo);
          continue;
        }
        this.ensurePump();
        await this.waitForHorizon(signal);
      }
    } finally {
      this.subscribers--;
    }
  }

  /** Stops the pump and ends every subscription. */
  async close(): Promise<void> {
    this.stop.abort();
    this.kickPump.done();
    for (const w of this.waiters) w.done();
    await this.pumping;
    const unlisten = await this.unlisten?.catch(() => null);
    await unlisten?.().catch(() => undefined);
  }

  private async currentHorizon(signal: AbortSignal | undefined): Promise<number> {
    while (this.horizonValue < 0) {
      throwIfAborted(signal);
      if (this.stop.signal.aborted) return 0;
      this.ensurePump();
      await this.waitForHorizon(signal);
    }
    return this.horizonValue;
  }

  private waitForHorizon(signal: AbortSignal | undefined): Promise<void> {
    const waiter = new Waiter();
    this.waiters.add(waiter);
    const onAbort = () => waiter.done();
    signal?.addEventListener('abort', onAbort, { once: true });
    return waiter.promise.finally(() => {
      this.waiters.delete(waiter);
      signal?.removeEventListener('abort', onAbort);
    });
  }

  private kick(): void {
    this.kicked = true;
    this.kickPump.done();
  }

  private ensurePump(): void {
    this.unlisten ??= this.log.onAppend(() => this.kick());
    this.unlisten.catch((err: unknown) => {
      // Without NOTIFY the slow poll still finds every event; a later subscriber tries again.
      this.onError(err);
      this.unlisten = null;
    });
    this.pumping ??= this.pump();
  }

  private async pump(): Promise<void> {
    let retryMs = 5;
    while (this.subscribers > 0 && !this.stop.signal.aborted) {
      this.kicked = false;
      this.kickPump = new Waiter();
      let wait = this.pollIntervalMs;
      try {
        const { horizon, latest } = await this.log.horizon();
        if (horizon > this.horizonValue) {
          this.horizonValue = horizon;
          for (const w of this.waiters) w.done();
        }
        // Ids beyond the horizon belong to transactions still running: look again soon.
        if (latest > horizon) {
          wait = retryMs;
          retryMs = Math.min(retryMs * 2, 200);
        } else {
          retryMs = 5;
        }
      } catch (err) {
        this.onError(err);
        wait = Math.min(this.pollIntervalMs, 1_000);
      }
      if (this.kicked) continue;
      await sleep(wait, this.stop.signal, this.kickPump.promise);
    }
    // Cleared before waking anyone, so a subscriber arriving now starts a new pump; the
    // horizon is forgotten so "from now" is sampled afresh.
    this.pumping = null;
    this.horizonValue = -1;
    for (const w of this.waiters) w.done();
  }
}
