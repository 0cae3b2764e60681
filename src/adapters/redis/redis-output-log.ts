/**
 * Live output through Redis Streams: one stream per session (`<prefix>s:{<tag>}:out`, on the
 * session's hash slot), entry id `<seq>-0`, trimmed to about `maxLen` entries and expiring
 * when idle. Every event in it is already archived in PostgreSQL.
 *
 * Writing costs one XADD per event: the idle expiry is renewed (PEXPIRE) only when this
 * instance last renewed that stream's more than `ttlMs / 60` ago, so a stream nobody writes to
 * is gone between 59/60 of `ttlMs` and `ttlMs` after its last event. After a reconnect (maybe
 * to a restarted Redis that lost the streams) the next write of every stream renews again, and
 * so does a session's first event (a stream erased and started again under the same id).
 *
 * Reading: one dedicated connection per instance runs a single blocking XREAD over every
 * session somebody reads here and feeds an in-process buffer that the local readers wait
 * on, so a thousand readers cost one Redis connection. A new session joins the read at
 * once (CLIENT UNBLOCK). On Redis Cluster, where one XREAD cannot span slots, the reader
 * visits each session's stream in turn with a short block instead.
 */
import { noteDataJson, outputDataJson, type OutputEvent, type OutputLog } from '../../core/runs.js';
import { InProcessOutputLog } from '../../core/in-process-output-log.js';
import type { GuardedRedis } from './guarded-redis.js';

interface StreamEntry {
  id: string;
  message: Record<string, string>;
}
type XReadReply = Array<{ name: string; messages: StreamEntry[] }> | null;

interface StreamClient {
  connect(): Promise<unknown>;
  close(): Promise<void>;
  destroy(): void;
  readonly isReady: boolean;
  on(event: 'error', listener: (err: unknown) => void): unknown;
  on(event: 'ready', listener: () => void): unknown;
  clientId(): Promise<number>;
  xRead(streams: Array<{ key: string; id: string }>, options?: { BLOCK?: number; COUNT?: number }): Promise<XReadReply>;
  xAdd(
    key: string,
    id: string,
    message: Record<string, string>,
    options?: { TRIM?: { strategy: 'MAXLEN'; strategyModifier: '~'; threshold: number } },
  ): Promise<string>;
  pExpire(key: string, ms: number): Promise<number>;
  sendCommand(args: string[]): Promise<unknown>;
}

export interface RedisOutputLogOptions {
  /** Entries kept per session stream (approximately). */
  maxLen?: number;
  /** A stream nobody wrote to for this long is deleted by Redis. */
  ttlMs?: number;
  /** Longest single blocking read. */
  blockMs?: number;
  /** Readers of a session that nobody read for this long are dropped from the loop. */
  idleMs?: number;
  onError?: (err: unknown) => void;
}

interface Watched {
  key: string;
  lastSeq: number;
  readAt: number;
}

export class RedisOutputLog implements OutputLog {
  readonly name = 'redis';
  private readonly buffer = new InProcessOutputLog({ maxEvents: 1_000, copyData: false });
  private readonly watched = new Map<string, Watched>();
  private readonly maxLen: number;
  private readonly ttlMs: number;
  private readonly blockMs: number;
  private readonly idleMs: number;
  private readonly onError: (err: unknown) => void;
  private failing = false;
  private readonly cluster: boolean;
  private reader: StreamClient | null = null;
  private readerId: number | null = null;
  private loop: Promise<void> | null = null;
  private starting: Promise<void> | null = null;
  private closed = false;
  private connected: Promise<void> | null = null;
  private wake: (() => void) | null = null;
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
    this.blockMs = options.blockMs ?? 5_000;
    this.idleMs = options.idleMs ?? 30_000;
    this.onError = options.onError ?? (() => undefined);
    this.cluster = redis.cluster;
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

  /** The first failure of an outage goes to onError; the rest of it is quiet until the reader works again. */
  private reportOnce(err: unknown): void {
    if (this.failing) return;
    this.failing = true;
    this.onError(err);
  }

  /** Starts the reader loop; it connects in the background, so start never waits for Redis. */
  ready(): Promise<void> {
    this.starting ??= (async () => {
      await this.buffer.ready();
      // Its own connection: a blocking read would stall every other command on a shared one.
      const reader = (this.redis.connection as unknown as { duplicate(): StreamClient }).duplicate();
      // node-redis reports every failed reconnect attempt: one report per outage is enough.
      reader.on('error', (err: unknown) => this.reportOnce(err));
      // A new connection has a new client id (for CLIENT UNBLOCK).
      reader.on('ready', () => {
        this.readerId = null;
        this.failing = false;
      });
      this.reader = reader;
      // Resolves once Redis is reachable (node-redis keeps retrying); until then readers poll the archive.
      this.connected = reader.connect().then(
        () => undefined,
        (err: unknown) => this.reportOnce(err),
      );
      this.loop = this.run();
    })();
    return this.starting;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.wake?.();
    await this.unblock();
    const reader = this.reader;
    if (reader?.isReady) await reader.close().catch(() => reader.destroy());
    else reader?.destroy();
    await this.loop?.catch(() => undefined);
    await this.buffer.close();
  }

  async publish(sessionId: string, events: readonly OutputEvent[]): Promise<void> {
    if (events.length === 0) return;
    const key = this.redis.keys.sessionPart(sessionId, 'out');
    const trim = { TRIM: { strategy: 'MAXLEN' as const, strategyModifier: '~' as const, threshold: this.maxLen } };
    await this.redis.run(async (r) => {
      const client = r as unknown as StreamClient;
      const add = (e: OutputEvent) =>
        client.xAdd(key, `${e.seq}-0`, { r: e.runId, t: e.type, d: outputDataJson(e), c: e.createdAt }, trim).catch((err: unknown) => {
          // An id at or below the stream's last one: a later event got there first. Readers
          // that need this one find a gap and read it from the archive.
          if (!/equal or smaller/i.test(String((err as Error).message))) throw err;
        });
      // Issued together, so node-redis pipelines them into one round trip.
      // A session's first event (seq 1) may create the stream after an erasure removed it
      // (on any instance, under an id created again): always renew then.
      const renew = this.renewDue(key, Date.now()) || events[0]?.seq === 1;
      await Promise.all(renew ? [...events.map(add), client.pExpire(key, this.ttlMs)] : events.map(add));
    }, 'write').catch((err: unknown) => {
      // It may not have been renewed: the next write tries again.
      this.renewedAt.delete(key);
      throw err;
    });
  }


  async discard(sessionIds: readonly string[]): Promise<void> {
    if (sessionIds.length === 0) return;
    for (const id of sessionIds) {
      this.watched.delete(id);
      this.renewedAt.delete(this.redis.keys.sessionPart(id, 'out'));
    }
    await this.buffer.discard(sessionIds);
    // One UNLINK per key: the streams live on their sessions' slots (Cluster).
    await this.redis.run((r) => Promise.all(sessionIds.map((id) => r.unlink(this.redis.keys.sessionPart(id, 'out')))), 'write');
  }

  read(sessionId: string, after: number, opts: { timeoutMs: number; signal?: AbortSignal }): Promise<OutputEvent[]> {
    const w = this.watched.get(sessionId);
    // A session the reader loop already reads (a reader's next wait) costs no extra turn.
    if (!w) return this.join(sessionId, after, opts);
    w.readAt = Date.now();
    return this.buffer.read(sessionId, after, opts);
  }

  /** Adds a session to the reader loop's read, then waits on it. */
  private async join(sessionId: string, after: number, opts: { timeoutMs: number; signal?: AbortSignal }): Promise<OutputEvent[]> {
    await this.ready();
    let w = this.watched.get(sessionId);
    if (!w) {
      w = { key: this.redis.keys.sessionPart(sessionId, 'out'), lastSeq: after, readAt: Date.now() };
      this.watched.set(sessionId, w);
      this.wake?.();
      await this.unblock();
    }
    w.readAt = Date.now();
    return this.buffer.read(sessionId, after, opts);
  }

  private async unblock(): Promise<void> {
    if (this.readerId === null) return;
    const id = String(this.readerId);
    await this.redis.run((r) => r.sendCommand(['CLIENT', 'UNBLOCK', id]), 'write').catch(() => undefined);
  }

  private async run(): Promise<void> {
    let failures = 0;
    const reader = this.reader as StreamClient;
    await Promise.race([this.connected, new Promise<void>((resolve) => (this.wake = resolve))]);
    while (!this.closed) {
      if (!reader.isReady) {
        // Reconnecting: readers fall back to the archive meanwhile.
        await new Promise((r) => setTimeout(r, 100));
        continue;
      }
      if (!this.cluster && this.readerId === null) {
        this.readerId = await reader.clientId().catch(() => null);
      }
      this.prune();
      if (this.watched.size === 0) {
        await new Promise<void>((resolve) => {
          this.wake = resolve;
          setTimeout(resolve, this.blockMs).unref();
        });
        this.wake = null;
        continue;
      }
      try {
        const entries = [...this.watched.entries()];
        if (this.cluster) {
          const block = entries.length === 1 ? this.blockMs : 0;
          let got = false;
          for (const [sessionId, w] of entries) {
            got = this.deliver(sessionId, (await this.readStreams([w], block))?.find((stream) => stream.name === w.key)) || got;
          }
          if (!got && entries.length > 1) await new Promise((r) => setTimeout(r, 25));
        } else {
          const reply = await this.readStreams(entries.map(([, w]) => w), this.blockMs);
          const byKey = new Map((reply ?? []).map((stream) => [stream.name, stream]));
          for (const [sessionId, w] of entries) this.deliver(sessionId, byKey.get(w.key));
        }
        failures = 0;
        this.failing = false;
      } catch (err) {
        if (this.closed) return;
        this.reportOnce(err);
        await new Promise((r) => setTimeout(r, Math.min(50 * 2 ** failures++, 2_000)));
      }
    }
  }

  private async readStreams(streams: Watched[], block: number): Promise<XReadReply> {
    const reader = this.reader as StreamClient;
    const args = streams.map((w) => ({ key: w.key, id: `${w.lastSeq}-0` }));
    return block > 0 ? reader.xRead(args, { BLOCK: block, COUNT: 1_000 }) : reader.xRead(args, { COUNT: 1_000 });
  }

  /** Moves one session's entries (its stream of a reply) into the local buffer; true when there were any. */
  private deliver(sessionId: string, stream: { messages: StreamEntry[] } | undefined): boolean {
    const w = this.watched.get(sessionId);
    if (!w || !stream || stream.messages.length === 0) return false;
    const events: OutputEvent[] = [];
    for (const m of stream.messages) {
      const seq = Number(m.id.split('-')[0]);
      const json = m.message.d ?? 'null';
      let data: unknown = null;
      try {
        data = JSON.parse(json);
      } catch {
        continue;
      }
      events.push(noteDataJson({ seq, runId: m.message.r ?? '', type: m.message.t ?? 'text', data, createdAt: m.message.c ?? '' }, json));
    }
    const last = events.at(-1);
    if (last) w.lastSeq = Math.max(w.lastSeq, last.seq);
    void this.buffer.publish(sessionId, events);
    return events.length > 0;
  }

  private prune(): void {
    const cutoff = Date.now() - this.idleMs;
    const reading = new Set(this.buffer.watched());
    for (const [sessionId, w] of this.watched) {
      if (w.readAt < cutoff && !reading.has(sessionId)) this.watched.delete(sessionId);
    }
  }
}
