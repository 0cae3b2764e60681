/**
 * Live output through Redis: every batch is added to its session's stream
 * (`<prefix>s:{<tag>}:batches`, one entry per batch with id `<its last seq>-0` and the batch's
 * message in field `m`, trimmed to about `maxLen` entries, expiring when idle) and, in the same
 * pipeline, published on the session's channel (`<prefix>s:{<tag>}:live`, the same message).
 * Every event in either is already archived in PostgreSQL. (Earlier versions kept one
 * entry per event in `<prefix>s:{<tag>}:out`; readers of either find the other's stream empty
 * and read the archive, and an erasure removes both.)
 *
 * Writing costs one XADD and one PUBLISH per batch: the idle expiry is renewed
 * (PEXPIRE) only when this instance last renewed that stream's more than `ttlMs / 60` ago, so
 * a stream nobody writes to is gone between 59/60 of `ttlMs` and `ttlMs` after its last
 * event. After a reconnect (maybe to a restarted Redis that lost the streams) the next write
 * of every stream renews again, and so does a session's first event (a stream erased and
 * started again under the same id).
 *
 * Reading: one dedicated subscriber connection per instance holds the channels of the
 * sessions somebody reads here and feeds an in-process buffer that the local readers wait on,
 * so a thousand readers cost one Redis connection and Redis does no work per reader and
 * event beyond the message. A session is subscribed first and its stream read (XRANGE) from
 * the reader's cursor after, so nothing published before the subscription took effect is
 * missed; what arrives both ways is dropped by seq. After a reconnect every session's stream
 * is read again from the last seq delivered. A message still lost shows its reader a hole,
 * and readers read the archive then. On a Cluster the messages are plain PUBLISH, which
 * reaches a subscriber on any node.
 */
import { noteDataJson, outputDataJson, type OutputEvent, type OutputLog } from '../../core/runs.js';
import { InProcessOutputLog } from '../../core/in-process-output-log.js';
import type { GuardedRedis } from './guarded-redis.js';

interface StreamEntry {
  id: string;
  message: Record<string, string>;
}

interface SubscriberClient {
  connect(): Promise<unknown>;
  close(): Promise<void>;
  destroy(): void;
  readonly isReady: boolean;
  on(event: 'error', listener: (err: unknown) => void): unknown;
  on(event: 'ready', listener: () => void): unknown;
  subscribe(channel: string, listener: (message: string, channel: string) => void): Promise<void>;
  unsubscribe(channel: string, listener: (message: string, channel: string) => void): Promise<void>;
}

interface StreamClient {
  xAdd(
    key: string,
    id: string,
    message: Record<string, string>,
    options?: { TRIM?: { strategy: 'MAXLEN'; strategyModifier: '~'; threshold: number } },
  ): Promise<string>;
  xRange(key: string, start: string, end: string, options?: { COUNT?: number }): Promise<StreamEntry[]>;
  pExpire(key: string, ms: number): Promise<number>;
  publish(channel: string, message: string): Promise<number>;
}

export interface RedisOutputLogOptions {
  /** Entries kept per session stream (approximately). */
  maxLen?: number;
  /** A stream nobody wrote to for this long is deleted by Redis. */
  ttlMs?: number;
  /** Sessions that nobody read here for this long are unsubscribed. */
  idleMs?: number;
  onError?: (err: unknown) => void;
}

interface Watched {
  key: string;
  channel: string;
  /** The highest seq delivered to the buffer (or the first reader's cursor). */
  lastSeq: number;
  readAt: number;
  /** Settles once the channel is subscribed, or its subscription failed (retried on the next ready). */
  subscribed: Promise<boolean>;
}

/**
 * A batch's message: the events' headers as one JSON array (`[[seq, runId, type, createdAt],
 * ...]`), then each event's data JSON text on a line of its own (JSON.stringify writes no
 * line breaks), so the reader keeps each data text as it came.
 */
export function encodeLive(events: readonly OutputEvent[]): string {
  const headers = JSON.stringify(events.map((e) => [e.seq, e.runId, e.type, e.createdAt]));
  let message = headers;
  for (const e of events) message += `\n${outputDataJson(e)}`;
  return message;
}

/** The events of a batch's message; null when it is not one. */
export function decodeLive(message: string): OutputEvent[] | null {
  const lines = message.split('\n');
  let headers: unknown;
  try {
    headers = JSON.parse(lines[0] ?? '');
  } catch {
    return null;
  }
  if (!Array.isArray(headers) || headers.length !== lines.length - 1) return null;
  const events: OutputEvent[] = [];
  for (let i = 0; i < headers.length; i++) {
    const [seq, runId, type, createdAt] = headers[i] as [unknown, unknown, unknown, unknown];
    if (typeof seq !== 'number' || typeof runId !== 'string' || typeof type !== 'string' || typeof createdAt !== 'string') return null;
    const event = parsedEvent(seq, runId, type, createdAt, lines[i + 1] as string);
    if (!event) return null;
    events.push(event);
  }
  return events;
}

/** An event whose data is parsed from its JSON text (kept beside it); null when the text is not JSON. */
function parsedEvent(seq: number, runId: string, type: string, createdAt: string, json: string): OutputEvent | null {
  let data: unknown;
  try {
    data = JSON.parse(json);
  } catch {
    return null;
  }
  return noteDataJson({ seq, runId, type, data, createdAt }, json);
}

/**
 * A stream's entries (batches) as events, in seq order (an entry that does not parse is left
 * out: its reader finds a hole). The first entry may hold events at or below the cursor (its
 * id is its batch's last seq); the buffer and the readers drop those.
 */
function streamEvents(entries: readonly StreamEntry[]): OutputEvent[] {
  const events: OutputEvent[] = [];
  for (const entry of entries) {
    const batch = entry.message.m === undefined ? null : decodeLive(entry.message.m);
    if (batch) events.push(...batch);
  }
  return events;
}

/** The stream's key part: one entry per batch. */
const STREAM = 'batches';

export class RedisOutputLog implements OutputLog {
  readonly name = 'redis';
  /**
   * Recent events per session for this instance's readers. A reader further behind than this
   * reads the archive; a larger buffer only grows the old generation (and its collections)
   * of an instance that serves many streams.
   */
  private readonly buffer = new InProcessOutputLog({ maxEvents: 256, copyData: false });
  private readonly watched = new Map<string, Watched>();
  /** Channel → session id, for the one message listener. */
  private readonly byChannel = new Map<string, string>();
  private readonly maxLen: number;
  private readonly ttlMs: number;
  private readonly idleMs: number;
  private readonly onError: (err: unknown) => void;
  private failing = false;
  private reader: SubscriberClient | null = null;
  private starting: Promise<void> | null = null;
  private pruneTimer: NodeJS.Timeout | null = null;
  private closed = false;
  /** When this instance last renewed each stream's expiry (only streams renewed within refreshMs). */
  private readonly renewedAt = new Map<string, number>();
  private readonly refreshMs: number;
  private renewedSweepAt = 0;

  constructor(
    private readonly redis: GuardedRedis,
    options: RedisOutputLogOptions = {},
  ) {
    this.maxLen = options.maxLen ?? 1_000;
    this.ttlMs = options.ttlMs ?? 3_600_000;
    this.idleMs = options.idleMs ?? 30_000;
    this.onError = options.onError ?? (() => undefined);
    this.refreshMs = Math.floor(this.ttlMs / 60);
    // A new connection may lead to a Redis that lost the streams: renew on the next writes.
    (redis.connection as unknown as NodeJS.EventEmitter).on?.('ready', () => this.renewedAt.clear());
  }

  /** True when the stream's expiry is due for renewal (and notes it as renewed now). */
  private renewDue(key: string, now: number): boolean {
    const last = this.renewedAt.get(key);
    if (last !== undefined && now - last < this.refreshMs) return false;
    this.renewedAt.set(key, now);
    if (now - this.renewedSweepAt >= this.refreshMs) {
      // Entries older than refreshMs say nothing any more (the next write renews anyway).
      this.renewedSweepAt = now;
      for (const [k, at] of this.renewedAt) if (now - at >= this.refreshMs) this.renewedAt.delete(k);
    }
    return true;
  }

  /** The first failure of an outage goes to onError; the rest of it is quiet until the subscriber works again. */
  private reportOnce(err: unknown): void {
    if (this.failing) return;
    this.failing = true;
    this.onError(err);
  }

  /** Starts the subscriber; it connects in the background, so start never waits for Redis. */
  ready(): Promise<void> {
    this.starting ??= (async () => {
      await this.buffer.ready();
      // Its own connection: the output's messages stay off the one that carries signals and invalidations.
      const reader = (this.redis.subscriber as unknown as { duplicate(): SubscriberClient }).duplicate();
      // node-redis reports every failed reconnect attempt: one report per outage is enough.
      reader.on('error', (err: unknown) => this.reportOnce(err));
      // node-redis subscribes its channels again before it says ready; what was published
      // meanwhile is read from the streams, and a channel whose subscription failed is subscribed now.
      reader.on('ready', () => {
        this.failing = false;
        for (const [sessionId, w] of this.watched) void this.resume(sessionId, w);
      });
      this.reader = reader;
      // Until Redis is reachable (node-redis keeps retrying) readers poll the archive.
      reader.connect().catch((err: unknown) => this.reportOnce(err));
      this.pruneTimer = setInterval(() => this.prune(), Math.max(1_000, this.idleMs / 2));
      this.pruneTimer.unref();
    })();
    return this.starting;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.pruneTimer) clearInterval(this.pruneTimer);
    const reader = this.reader;
    if (reader?.isReady) await reader.close().catch(() => reader.destroy());
    else reader?.destroy();
    await this.buffer.close();
  }

  async publish(sessionId: string, events: readonly OutputEvent[]): Promise<void> {
    if (events.length === 0) return;
    const key = this.redis.keys.sessionPart(sessionId, STREAM);
    const channel = this.redis.keys.sessionPart(sessionId, 'live');
    const trim = { TRIM: { strategy: 'MAXLEN' as const, strategyModifier: '~' as const, threshold: this.maxLen } };
    const message = encodeLive(events);
    const lastSeq = (events.at(-1) as OutputEvent).seq;
    await this.redis.run(async (r) => {
      const client = r as unknown as StreamClient;
      // Issued together, so node-redis pipelines them into one round trip; the message goes
      // after the entry, so a reader that subscribed and then read the stream has both.
      const calls: Array<Promise<unknown>> = [
        client.xAdd(key, `${lastSeq}-0`, { m: message }, trim).catch((err: unknown) => {
          // An id at or below the stream's last one: a later batch got there first. Readers
          // that need this one find a gap and read it from the archive.
          if (!/equal or smaller/i.test(String((err as Error).message))) throw err;
        }),
      ];
      // A session's first event (seq 1) may create the stream after an erasure removed it
      // (on any instance, under an id created again): always renew then.
      if (this.renewDue(key, Date.now()) || events[0]?.seq === 1) calls.push(client.pExpire(key, this.ttlMs));
      calls.push(client.publish(channel, message));
      await Promise.all(calls);
    }, 'write').catch((err: unknown) => {
      // It may not have been renewed: the next write tries again.
      this.renewedAt.delete(key);
      throw err;
    });
  }

  async discard(sessionIds: readonly string[]): Promise<void> {
    if (sessionIds.length === 0) return;
    for (const id of sessionIds) {
      this.unwatch(id);
      this.renewedAt.delete(this.redis.keys.sessionPart(id, STREAM));
    }
    await this.buffer.discard(sessionIds);
    // One UNLINK per session: its keys share its slot (Cluster). `out`: an earlier version's stream.
    await this.redis.run(
      (r) => Promise.all(sessionIds.map((id) => r.unlink([this.redis.keys.sessionPart(id, STREAM), this.redis.keys.sessionPart(id, 'out')]))),
      'write',
    );
  }

  read(sessionId: string, after: number, opts: { timeoutMs: number; signal?: AbortSignal }): Promise<OutputEvent[]> {
    const w = this.watched.get(sessionId);
    // A session already subscribed here (a reader's next wait) costs no extra turn.
    if (!w) return this.join(sessionId, after, opts);
    w.readAt = Date.now();
    return this.buffer.read(sessionId, after, opts);
  }

  /** Subscribes a session's channel, reads what its stream holds after `after`, then waits on it. */
  private async join(sessionId: string, after: number, opts: { timeoutMs: number; signal?: AbortSignal }): Promise<OutputEvent[]> {
    await this.ready();
    let w = this.watched.get(sessionId);
    if (!w) {
      const channel = this.redis.keys.sessionPart(sessionId, 'live');
      w = { key: this.redis.keys.sessionPart(sessionId, STREAM), channel, lastSeq: after, readAt: Date.now(), subscribed: Promise.resolve(false) };
      this.watched.set(sessionId, w);
      this.byChannel.set(channel, sessionId);
      w.subscribed = this.subscribe(w);
    }
    w.readAt = Date.now();
    if (await w.subscribed) await this.catchUp(sessionId, w, after);
    return this.buffer.read(sessionId, after, opts);
  }

  private readonly onMessage = (message: string, channel: string): void => {
    const sessionId = this.byChannel.get(channel);
    if (sessionId === undefined) return;
    const events = decodeLive(message);
    if (events) this.deliver(sessionId, events);
  };

  private async subscribe(w: Watched): Promise<boolean> {
    const reader = this.reader;
    if (!reader?.isReady) return false;
    try {
      await reader.subscribe(w.channel, this.onMessage);
      // Dropped (idle, erased) while the subscription was on its way: not kept for nobody.
      if (!this.byChannel.has(w.channel)) await reader.unsubscribe(w.channel, this.onMessage);
      return true;
    } catch (err) {
      if (!this.closed) this.reportOnce(err);
      return false;
    }
  }

  /** After a (re)connect: subscribed again (a no-op for a channel node-redis renewed), then the stream read from the last seq delivered. */
  private async resume(sessionId: string, w: Watched): Promise<void> {
    w.subscribed = this.subscribe(w);
    if (await w.subscribed) await this.catchUp(sessionId, w, w.lastSeq);
  }

  /** Moves a session's stream entries after `after` into the buffer; a failure leaves the reader to the archive. */
  private async catchUp(sessionId: string, w: Watched, after: number): Promise<void> {
    try {
      // The entries whose last seq is after the cursor: the first may start at or before it.
      const entries = await this.redis.run((r) => (r as unknown as StreamClient).xRange(w.key, `${after + 1}-0`, '+', { COUNT: 1_000 }), 'read');
      this.deliver(sessionId, streamEvents(entries));
    } catch {
      // Redis refused or is down: the reader's wait ends empty and it reads the archive.
    }
  }

  /** Hands a session's events to the local buffer (it drops what it holds already). */
  private deliver(sessionId: string, events: OutputEvent[]): void {
    const w = this.watched.get(sessionId);
    const last = events.at(-1);
    if (!w || !last) return;
    w.lastSeq = Math.max(w.lastSeq, last.seq);
    void this.buffer.publish(sessionId, events);
  }

  private unwatch(sessionId: string): void {
    const w = this.watched.get(sessionId);
    if (!w) return;
    this.watched.delete(sessionId);
    this.byChannel.delete(w.channel);
    const reader = this.reader;
    if (reader?.isReady) reader.unsubscribe(w.channel, this.onMessage).catch(() => undefined);
  }

  private prune(): void {
    const cutoff = Date.now() - this.idleMs;
    const reading = new Set(this.buffer.watched());
    for (const [sessionId, w] of this.watched) {
      if (w.readAt < cutoff && !reading.has(sessionId)) this.unwatch(sessionId);
    }
  }
}
