/**
 * Live output for distributed mode without Redis: a NOTIFY per committed batch wakes the
 * readers of that session on every instance, and they read the events from the archive.
 * (NOTIFY payloads are small and unstored, so the events themselves never travel in them.)
 */
import type { OutputEvent, OutputLog } from '../../core/runs.js';
import { ChannelSubscription } from './channel-subscription.js';
import type { SqlDatabase } from './database.js';
import { run, statements } from './sql.js';

const SQL = statements('notify');

const CHANNEL = 'agent_sessions_output';

interface Waiter {
  after: number;
  wake: () => void;
}

export class PgOutputLog implements OutputLog {
  readonly name = 'postgres';
  private readonly waiters = new Map<string, Set<Waiter>>();
  /** The last seq announced per session, so a reader that registers just after a NOTIFY still sees it. */
  private readonly announced = new Map<string, number>();
  private readonly subscription: ChannelSubscription;

  constructor(private readonly db: SqlDatabase) {
    this.subscription = new ChannelSubscription(db, CHANNEL, (payload) => this.dispatch(payload));
  }

  ready(): Promise<void> {
    return this.subscription.start();
  }

  async close(): Promise<void> {
    await this.subscription.stop();
    for (const set of this.waiters.values()) for (const w of set) w.wake();
    this.waiters.clear();
  }

  private dispatch(payload: string): void {
    const [sessionId, seq] = payload.split(' ');
    if (!sessionId || seq === undefined) return;
    const last = Number(seq);
    if (this.announced.size >= 10_000) this.announced.clear();
    this.announced.set(sessionId, Math.max(last, this.announced.get(sessionId) ?? 0));
    for (const w of this.waiters.get(sessionId) ?? []) if (last > w.after) w.wake();
  }

  async publish(sessionId: string, events: readonly OutputEvent[]): Promise<void> {
    const last = events.at(-1);
    if (!last) return;
    await run(this.db, SQL.notify, { channel: CHANNEL, payload: `${sessionId} ${last.seq}` });
  }

  async read(sessionId: string, after: number, opts: { timeoutMs: number; signal?: AbortSignal }): Promise<OutputEvent[]> {
    await this.ready();
    if (opts.signal?.aborted || (this.announced.get(sessionId) ?? 0) > after) return [];
    await new Promise<void>((resolve) => {
      let set = this.waiters.get(sessionId);
      if (!set) {
        set = new Set();
        this.waiters.set(sessionId, set);
      }
      const waiters = set;
      const wake = () => {
        clearTimeout(timer);
        opts.signal?.removeEventListener('abort', wake);
        waiters.delete(waiter);
        if (waiters.size === 0) this.waiters.delete(sessionId);
        resolve();
      };
      const waiter: Waiter = { after, wake };
      const timer = setTimeout(wake, opts.timeoutMs);
      opts.signal?.addEventListener('abort', wake, { once: true });
      waiters.add(waiter);
    });
    // Always empty: the caller reads what woke it from the archive.
    return [];
  }
}
