/**
 * Writing and reading a session's output.
 *
 * Writes are archive-first: a batch is committed to PostgreSQL before it is published live,
 * so the archive always holds everything a live reader has seen. A batch's seqs follow its
 * run's start event and the events its writer archived before: while a run runs, its writer
 * is the only one that writes its session's output. Readers therefore resume from any seq by
 * reading the archive and then the live log, and fill any hole in the live log (trimmed,
 * lost in a Redis restart, published out of order) from the archive: no gap, no duplicate.
 * Only the output retention (OUTPUT_RETENTION_HOURS) removes archived events: a reader whose
 * cursor is older than the first retained seq gets a `gap` event first (seqs are contiguous
 * per session, so the archive's first seq after the cursor tells).
 */
import { sessionKey } from './ids.js';
import { throwIfAborted } from './abort.js';
import { NotFoundError } from './errors.js';
import { GAP_EVENT_TYPE, isTerminalEvent, type ArchivedOutputEvent, type GapData, type OutputBatch, type OutputEvent, type OutputLog, type RunRepository } from './runs.js';

const ARCHIVE_PAGE = 500;
const MAX_BATCH = 500;

interface Pending {
  event: ArchivedOutputEvent;
  resolve: (seq: number) => void;
  reject: (err: unknown) => void;
}

interface QueuedBatch {
  batch: OutputBatch;
  /** Goes in a statement of its own (its session was busy, or its group failed). */
  alone?: boolean;
  /** When it was handed over (performance.now()), for the commit delay. */
  at: number;
  resolve: (stored: OutputEvent[] | null) => void;
  reject: (err: unknown) => void;
}

export interface OutputArchiveOptions {
  /** Archive statements in flight at once (default 4). */
  maxInFlight?: number;
  /** Events one statement carries at most (default 2,000; a larger single batch goes alone). */
  maxEvents?: number;
  /**
   * Commit delay (ms, default 0: none). While at least `commitSiblings` runs write here, a
   * statement waits until its oldest batch is this old (or `maxEvents` are queued), so the
   * events of many runs share one commit: fewer, larger commits for a small added latency.
   * The same trade as PostgreSQL's commit_delay / commit_siblings.
   */
  commitDelayMs?: number;
  /** Runs writing here at once from which the commit delay applies (default 32). */
  commitSiblings?: number;
  /** How many runs write here now (the commit delay's condition; default: none). */
  writers?: () => number;
}

/**
 * Group commit across runs: the writers of every run on this instance hand their batches
 * here, and batches that arrive while statements are in flight go together in the next one,
 * so many runs' events share one commit. (A runner that awaits each emit has one event in
 * flight: without this, every event would be a commit of its own.) A statement carries at
 * most one batch per session; a writer has one batch in flight at a time, so per-session
 * order is the writer's. Batches handed over in the same turn of the event loop are grouped
 * before any statement starts.
 */
export class OutputArchive {
  private queue: QueuedBatch[] = [];
  private inFlight = 0;
  /** Batches in the statements in flight (a writer has at most one batch queued or in flight). */
  private batchesInFlight = 0;
  private scheduled = false;
  private readonly maxInFlight: number;
  private readonly maxEvents: number;
  private readonly commitDelayMs: number;
  private readonly commitSiblings: number;
  private readonly writers: () => number;
  /** Events in the queue (the commit delay ends early at maxEvents). */
  private queuedEvents = 0;
  /** The commit delay's timer, while a statement waits for its oldest batch to come of age. */
  private delayed: NodeJS.Timeout | null = null;

  constructor(
    private readonly repository: Pick<RunRepository, 'appendOutput'>,
    options: OutputArchiveOptions = {},
  ) {
    this.maxInFlight = options.maxInFlight ?? 4;
    this.maxEvents = options.maxEvents ?? 2_000;
    this.commitDelayMs = options.commitDelayMs ?? 0;
    this.commitSiblings = options.commitSiblings ?? 32;
    this.writers = options.writers ?? (() => 0);
  }

  /** The batch's stored events once committed, or null when its run is not running there. */
  append(batch: OutputBatch): Promise<OutputEvent[] | null> {
    return new Promise((resolve, reject) => {
      this.queue.push({ batch, resolve, reject, at: performance.now() });
      this.queuedEvents += batch.events.length;
      if (!this.scheduled) {
        this.scheduled = true;
        // A turn of the event loop, not a microtask: batches of every run that emits in this
        // turn go together, and a runner emitting in a loop over a store that answers without
        // I/O (PGlite) still lets timers, signals and requests in between its emits.
        setImmediate(() => {
          this.scheduled = false;
          this.kick();
        });
      }
    });
  }

  private kick(): void {
    while (this.inFlight < this.maxInFlight && this.queue.length > 0) {
      if (this.holding()) return;
      const group = this.take();
      this.inFlight++;
      this.batchesInFlight += group.length;
      void this.commit(group).finally(() => {
        this.inFlight--;
        this.batchesInFlight -= group.length;
        this.kick();
      });
    }
  }

  /**
   * Whether the next statement still waits for the commit delay. When it does, a timer kicks
   * again then; arrivals and finished statements meanwhile kick for nothing. It does not wait
   * once every run writing here has a batch queued or in flight: no other batch can come
   * before a statement ends, so waiting would gather nothing. (Runs that await each emit all
   * wait on one statement when they fall behind their pace; without this they would also
   * wait out the delay on every round.)
   */
  private holding(): boolean {
    if (this.commitDelayMs <= 0) return false;
    const oldest = this.queue[0] as QueuedBatch;
    const writers = this.writers();
    const wait =
      oldest.alone || this.queuedEvents >= this.maxEvents || writers < this.commitSiblings || this.queue.length + this.batchesInFlight >= writers
        ? 0
        : oldest.at + this.commitDelayMs - performance.now();
    // Timers fire on the loop's millisecond clock, possibly a fraction early: close enough.
    if (wait < 0.5) {
      if (this.delayed) clearTimeout(this.delayed);
      this.delayed = null;
      return false;
    }
    this.delayed ??= setTimeout(() => {
      this.delayed = null;
      this.kick();
    }, wait);
    return true;
  }

  /** The next statement's batches: in arrival order, one per session, up to maxEvents. */
  private take(): QueuedBatch[] {
    const lone = this.queue.findIndex((q) => q.alone);
    if (lone >= 0) {
      const [queued] = this.queue.splice(lone, 1) as [QueuedBatch];
      this.queuedEvents -= queued.batch.events.length;
      return [queued];
    }
    const group: QueuedBatch[] = [];
    const rest: QueuedBatch[] = [];
    const sessions = new Set<string>();
    let events = 0;
    for (const queued of this.queue) {
      const session = sessionKey(queued.batch.tenant, queued.batch.sessionId);
      const size = queued.batch.events.length;
      if (sessions.has(session) || (group.length > 0 && events + size > this.maxEvents)) {
        rest.push(queued);
        continue;
      }
      group.push(queued);
      sessions.add(session);
      events += size;
    }
    this.queue = rest;
    this.queuedEvents -= events;
    return group;
  }

  /**
   * A group does not wait on a session another transaction holds: that batch goes again alone
   * (and waits), so one busy session never stalls the others. A group the database refused
   * for a reason other than an outage (one batch holding a value it will not store) goes again
   * batch by batch, so only the run that sent it fails.
   */
  private async commit(group: readonly QueuedBatch[]): Promise<void> {
    const alone = group.length === 1;
    try {
      const outcomes = await this.repository.appendOutput(
        group.map((q) => q.batch),
        { wait: alone },
      );
      group.forEach((q, i) => {
        const outcome = outcomes[i];
        if (outcome === 'busy') this.again(q);
        else q.resolve(outcome ?? null);
      });
    } catch (err) {
      if (!alone && (err as { code?: unknown }).code !== 'unavailable') {
        for (const q of group) this.again(q);
        return;
      }
      for (const q of group) q.reject(err);
    }
  }

  /** Sends a batch again in a statement of its own (taken before any group; kick follows). */
  private again(queued: QueuedBatch): void {
    queued.alone = true;
    this.queue.unshift(queued);
    this.queuedEvents += queued.batch.events.length;
  }
}

export interface OutputWriterOptions {
  archive: OutputArchive;
  live: OutputLog;
  tenant: string;
  sessionId: string;
  runId: string;
  /** This instance (the run's owner). */
  owner: string;
  /** The run is no longer this instance's: stop writing. */
  onLost: () => void;
  /** Archiving failed for good (after retries): the run cannot go on. */
  onFailed: (err: unknown) => void;
  onPublishError: (err: unknown) => void;
}

/**
 * Batches a run's events: while one batch is being committed, new events queue up and go
 * in the next one (group commit), so a fast producer costs one round trip per batch. The
 * batches of all runs share statements through the instance's OutputArchive.
 */
export class OutputWriter {
  private pending: Pending[] = [];
  private flushing: Promise<void> | null = null;
  /** Live publishes, chained so they leave in commit order while the next batch commits. */
  private publishing: Promise<void> = Promise.resolve();
  private failure: unknown = null;
  /** Events of this run archived so far: the next batch's offset (OutputBatch). */
  private archived = 0;

  constructor(private readonly options: OutputWriterOptions) {}

  push(event: ArchivedOutputEvent): Promise<number> {
    if (this.failure !== null) return Promise.reject(this.failure);
    const promise = new Promise<number>((resolve, reject) => {
      this.pending.push({ event, resolve, reject });
    });
    this.kick();
    return promise;
  }

  /** Resolves once everything pushed so far is committed (or has failed) and published. */
  async flush(): Promise<void> {
    while (this.flushing) await this.flushing;
    await this.publishing;
  }

  /** Refuses further events; pending ones fail with `err`. */
  close(err: unknown): void {
    this.failure ??= err;
    for (const p of this.pending.splice(0)) p.reject(err);
  }

  private kick(): void {
    this.flushing ??= this.drain().finally(() => {
      this.flushing = null;
      if (this.pending.length > 0 && this.failure === null) this.kick();
    });
  }

  private async drain(): Promise<void> {
    const { archive, live, tenant, sessionId, runId, owner } = this.options;
    const key = sessionKey(tenant, sessionId);
    while (this.pending.length > 0 && this.failure === null) {
      const batch = this.pending.splice(0, MAX_BATCH);
      let stored: OutputEvent[] | null;
      try {
        stored = await withRetries(() => archive.append({ tenant, sessionId, runId, owner, offset: this.archived, events: batch.map((p) => p.event) }));
      } catch (err) {
        for (const p of batch) p.reject(err);
        this.close(err);
        this.options.onFailed(err);
        return;
      }
      if (stored === null) {
        const err = new Error(`run ${runId} is no longer running here`);
        for (const p of batch) p.reject(err);
        this.close(err);
        this.options.onLost();
        return;
      }
      this.archived += batch.length;
      batch.forEach((p, i) => p.resolve(stored[i]?.seq ?? 0));
      // Published in commit order; a failure only makes readers use the archive.
      this.publishing = this.publishing.then(() => live.publish(key, stored).catch(this.options.onPublishError));
    }
  }
}

async function withRetries<T>(fn: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if ((err as { code?: unknown }).code !== 'unavailable' || attempt >= 5) throw err;
      await new Promise((r) => setTimeout(r, Math.min(50 * 2 ** attempt, 1_000)));
    }
  }
}

export interface ReadOutputOptions {
  repository: RunRepository;
  live: OutputLog;
  tenant: string;
  sessionId: string;
  after: number;
  signal?: AbortSignal;
  /** How long the live log may stay quiet before the archive is checked again. */
  pollMs: number;
}

/**
 * Events after `after`, in seq order, ending after the first terminal event. Where the archive's
 * next seq is beyond the cursor's next, those events were pruned: a `gap` event says so before
 * the next retained one (its seq is the last one missing, so resuming from it skips nothing
 * retained).
 */
export async function* readOutput(options: ReadOutputOptions): AsyncGenerator<OutputEvent, void, undefined> {
  const { repository, live, tenant, sessionId, signal, pollMs } = options;
  const key = sessionKey(tenant, sessionId);
  let cursor = options.after;
  for (;;) {
    throwIfAborted(signal);
    const archived = await repository.readOutput(tenant, sessionId, cursor, ARCHIVE_PAGE);
    // Purged while being read: nothing more will ever come.
    if (archived === null) throw new NotFoundError('session', sessionId);
    for (const e of archived) {
      if (e.seq > cursor + 1) {
        const gap = gapEvent(cursor + 1, e.seq - 1, e.runId);
        cursor = gap.seq;
        yield gap;
      }
      cursor = e.seq;
      yield e;
      if (isTerminalEvent(e)) return;
    }
    if (archived.length === ARCHIVE_PAGE) continue;
    // Live: take events while they continue the sequence; on a hole or a quiet spell, go
    // back to the archive, which holds every event that was ever published.
    for (;;) {
      throwIfAborted(signal);
      const events = await live.read(key, cursor, { timeoutMs: pollMs, signal });
      const fresh = events.filter((e) => e.seq > cursor);
      let continuous = fresh.length > 0;
      for (const e of fresh) {
        if (e.seq !== cursor + 1) {
          continuous = false;
          break;
        }
        cursor = e.seq;
        yield e;
        if (isTerminalEvent(e)) return;
      }
      if (!continuous) break;
    }
  }
}

/** The `gap` event a reader gets for pruned output; `runId` is the run the stream continues with. */
export function gapEvent(from: number, to: number, runId: string): OutputEvent {
  const data: GapData = { from, to, reason: 'retention' };
  return { seq: to, runId, type: GAP_EVENT_TYPE, data, createdAt: new Date().toISOString() };
}
