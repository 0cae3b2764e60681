/**
 * Near-cache invalidation over PostgreSQL LISTEN/NOTIFY, for distributed mode without Redis.
 * The session repository's write statements notify themselves (`sentByWrites`: delivered at
 * commit, so a write cannot be acknowledged without it); otherwise a writer notifies right
 * after its write committed (before acknowledging it). Every instance listening drops older
 * entries. While the listening connection is down the bus is not live
 * (near cache bypassed) and it is cleared when the connection listens again.
 */
import {
  eventLoopSettle,
  formatInvalidation,
  parseInvalidation,
  type InvalidationBus,
  type InvalidationHandlers,
} from '../../core/invalidation.js';
import type { SqlDatabase } from './database.js';
import { run, statements } from './sql.js';

const SQL = statements('notifyEach');

export const CACHE_INVALIDATION_CHANNEL = 'agent_sessions_cache';

export class PgNotifyInvalidationBus implements InvalidationBus {
  readonly kind = 'postgres';
  private unlisten: (() => Promise<void>) | null = null;
  private batch: { messages: string[]; sent: Promise<void> } | null = null;
  /** Notifications are read by this process's event loop: two polls apply what has arrived. */
  readonly settle = eventLoopSettle();

  constructor(
    private readonly db: SqlDatabase,
    /** The writes notify as part of their own statement: publish has nothing to do. */
    private readonly options: { sentByWrites?: boolean } = {},
  ) {}

  get live(): boolean {
    return this.unlisten !== null && this.db.listening !== false;
  }

  async start(handlers: InvalidationHandlers): Promise<void> {
    this.unlisten = await this.db.listen(
      CACHE_INVALIDATION_CHANNEL,
      (payload) => {
        const m = parseInvalidation(payload);
        if (m) handlers.onInvalidate(m.id, m.version);
      },
      () => handlers.onReset(),
    );
  }

  /**
   * Notifications published in the same turn of the event loop go out in one statement, so
   * a burst of writes costs one extra round trip, not one each (the pool stays free for the
   * writes themselves).
   */
  publish(id: string, version: number, options: { announced?: boolean } = {}): Promise<void> {
    if (this.options.sentByWrites && options.announced !== false) return Promise.resolve();
    if (!this.batch) {
      const batch: { messages: string[]; sent: Promise<void> } = { messages: [], sent: Promise.resolve() };
      batch.sent = new Promise<void>((resolve, reject) => {
        setImmediate(() => {
          if (this.batch === batch) this.batch = null;
          run(this.db, SQL.notifyEach, { channel: CACHE_INVALIDATION_CHANNEL, payloads: batch.messages }).then(() => resolve(), reject);
        });
      });
      this.batch = batch;
    }
    this.batch.messages.push(formatInvalidation(id, version));
    return this.batch.sent;
  }

  async close(): Promise<void> {
    const unlisten = this.unlisten;
    this.unlisten = null;
    await unlisten?.();
  }
}
