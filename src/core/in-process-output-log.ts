/**
 * Live output within one process: a bounded ring of recent events per session and the
 * readers waiting on it. Embedded mode uses it directly; the Redis adapter feeds one from
 * its stream reader so local readers share one Redis read per session.
 */
import { noteDataJson, outputDataJson, type OutputEvent, type OutputLog } from './runs.js';

interface Waiter {
  after: number;
  resolve: (events: OutputEvent[]) => void;
}

interface SessionBuffer {
  events: OutputEvent[];
  waiters: Set<Waiter>;
  touchedAt: number;
}

export interface InProcessOutputLogOptions {
  /** Events kept per session at least (up to a quarter more; older ones are read from the archive). */
  maxEvents?: number;
  /** Sessions whose buffer nobody touched for this long are dropped. */
  idleMs?: number;
  /**
   * Readers get a copy of each event's data, parsed from its JSON text (default true): a
   * published event may hold the runner's own object, which it is free to change after its
   * emit. The Redis log's buffer, fed with data parsed from Redis, turns it off.
   */
  copyData?: boolean;
}

/** The events after seq `after` (a session's events are in ascending seq order): a binary search, not a scan. */
function eventsAfter(events: readonly OutputEvent[], after: number): OutputEvent[] {
  let lo = 0;
  let hi = events.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((events[mid] as OutputEvent).seq > after) hi = mid;
    else lo = mid + 1;
  }
  return events.slice(lo);
}

/**
 * The waiters of each reader's signal. A reader waits once per event it reads, so its signal
 * gets one abort listener for all its waits, not one added and removed per wait.
 */
const abortWaiters = new WeakMap<AbortSignal, Set<Waiter>>();

function waitOnAbort(signal: AbortSignal, waiter: Waiter): void {
  let waiters = abortWaiters.get(signal);
  if (!waiters) {
    const set = (waiters = new Set());
    abortWaiters.set(signal, set);
    signal.addEventListener('abort', () => {
      for (const w of [...set]) w.resolve([]);
    }, { once: true });
  }
  waiters.add(waiter);
}

function copied(e: OutputEvent): OutputEvent {
  const json = outputDataJson(e);
  return noteDataJson({ ...e, data: JSON.parse(json) as unknown }, json);
}

export class InProcessOutputLog implements OutputLog {
  readonly name = 'memory';
  private readonly sessions = new Map<string, SessionBuffer>();
  private readonly maxEvents: number;
  private readonly idleMs: number;
  private readonly copyData: boolean;
  private timer: NodeJS.Timeout | null = null;

  constructor(options: InProcessOutputLogOptions = {}) {
    this.maxEvents = options.maxEvents ?? 1_000;
    this.idleMs = options.idleMs ?? 60_000;
    this.copyData = options.copyData ?? true;
  }

  async ready(): Promise<void> {
    this.timer ??= setInterval(() => this.prune(), Math.max(1_000, this.idleMs / 2)).unref();
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    for (const buffer of this.sessions.values()) for (const w of buffer.waiters) w.resolve([]);
    this.sessions.clear();
  }

  private buffer(sessionId: string): SessionBuffer {
    let buffer = this.sessions.get(sessionId);
    if (!buffer) {
      buffer = { events: [], waiters: new Set(), touchedAt: Date.now() };
      this.sessions.set(sessionId, buffer);
    }
    buffer.touchedAt = Date.now();
    return buffer;
  }

  /** Sessions somebody is reading right now. */
  watched(): string[] {
    return [...this.sessions.entries()].filter(([, b]) => b.waiters.size > 0).map(([id]) => id);
  }

  /** The highest seq held for a session, or null. */
  lastSeq(sessionId: string): number | null {
    return this.sessions.get(sessionId)?.events.at(-1)?.seq ?? null;
  }

  async discard(sessionIds: readonly string[]): Promise<void> {
    for (const id of sessionIds) {
      const buffer = this.sessions.get(id);
      if (!buffer) continue;
      for (const w of buffer.waiters) w.resolve([]);
      this.sessions.delete(id);
    }
  }

  async publish(sessionId: string, events: readonly OutputEvent[]): Promise<void> {
    if (events.length === 0) return;
    const buffer = this.buffer(sessionId);
    const last = buffer.events.at(-1)?.seq ?? 0;
    for (const e of events) {
      // Out-of-order arrivals are dropped: readers notice the gap and read the archive.
      if (e.seq > (buffer.events.at(-1)?.seq ?? 0)) buffer.events.push(this.copyData ? copied(e) : e);
    }
    // Trimmed in steps of a quarter (at least 16), not on every event: a full buffer would
    // otherwise move all of its events on each publish.
    if (buffer.events.length >= this.maxEvents + Math.max(16, this.maxEvents >> 2)) {
      buffer.events.splice(0, buffer.events.length - this.maxEvents);
    }
    if ((buffer.events.at(-1)?.seq ?? 0) === last) return;
    for (const w of [...buffer.waiters]) {
      const fresh = eventsAfter(buffer.events, w.after);
      if (fresh.length > 0) {
        buffer.waiters.delete(w);
        w.resolve(fresh);
      }
    }
  }

  read(sessionId: string, after: number, opts: { timeoutMs: number; signal?: AbortSignal }): Promise<OutputEvent[]> {
    const buffer = this.buffer(sessionId);
    const held = eventsAfter(buffer.events, after);
    if (held.length > 0 || opts.signal?.aborted) return Promise.resolve(held);
    const signal = opts.signal;
    return new Promise((resolve) => {
      const finish = (events: OutputEvent[]) => {
        clearTimeout(timer);
        if (signal) abortWaiters.get(signal)?.delete(waiter);
        buffer.waiters.delete(waiter);
        resolve(events);
      };
      const waiter: Waiter = { after, resolve: finish };
      const timer = setTimeout(() => finish([]), opts.timeoutMs);
      if (signal) waitOnAbort(signal, waiter);
      buffer.waiters.add(waiter);
    });
  }

  private prune(): void {
    const cutoff = Date.now() - this.idleMs;
    for (const [id, buffer] of this.sessions) {
      if (buffer.waiters.size === 0 && buffer.touchedAt < cutoff) this.sessions.delete(id);
    }
  }
}
