/**
 * Near-cache invalidation over PostgreSQL LISTEN/NOTIFY, for distributed mode without Redis.
 * The session writes do not notify inside their own statements (PostgreSQL serializes the
 * commits of all notifying transactions, which would cap every write at that pace): a writer
 * publishes after its write committed, and the messages of all writers of this instance go out
 * together, in one `notify-each` statement per batch with at most one batch in flight. Every
 * instance listening drops older entries. A write whose message never goes out (the process
 * died between commit and publish) is caught by the near cache's periodic check of its
 * entries' versions (`committedVersions` below; docs/distributed.md gives the bound). While the
 * listening connection is down the bus is not live (near cache bypassed) and it is cleared
 * when the connection listens again.
 */
import {
  eventLoopSettle,
  formatInvalidation,
  parseInvalidation,
  type InvalidationBus,
  type InvalidationHandlers,
} from '../../core/invalidation.js';
import { splitSessionKey } from '../../core/ids.js';
import type { SqlDatabase } from './database.js';
import { run, statements } from './sql.js';

const SQL = statements('notifyEach', 'sessionVersions');

export const CACHE_INVALIDATION_CHANNEL = 'agent_sessions_cache';

interface Batch {
  messages: string[];
  sent: Promise<void>;
  resolve: () => void;
  reject: (err: unknown) => void;
}

function newBatch(): Batch {
  let resolve!: () => void;
  let reject!: (err: unknown) => void;
  const sent = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { messages: [], sent, resolve, reject };
}

export class PgNotifyInvalidationBus implements InvalidationBus {
  readonly kind = 'postgres';
  private unlisten: (() => Promise<void>) | null = null;
  /** Messages waiting to go out. */
  private queued: Batch | null = null;
  /** Whether a batch is being sent (its statement not yet answered). */
  private sending = false;
  /** Statements sent (each one notifying transaction) and the messages they carried. */
  readonly sent = { statements: 0, messages: 0 };
  /** Notifications are read by this process's event loop: two polls apply what has arrived. */
  readonly settle = eventLoopSettle();

  constructor(private readonly db: SqlDatabase) {}

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
   * Queues the message; resolves once the statement that sent it committed. Messages queued
   * while a batch is in flight go out together right after it, so a burst of writes costs
   * one notifying transaction per round trip, not one per write (PostgreSQL serializes the
   * commits of notifying transactions), and takes at most one pool connection.
   */
  publish(id: string, version: number): Promise<void> {
    if (!this.queued) {
      this.queued = newBatch();
      // The first message waits for the writes finishing in the same turn to join it.
      if (!this.sending) setImmediate(() => void this.flush());
    }
    this.queued.messages.push(formatInvalidation(id, version));
    return this.queued.sent;
  }

  private async flush(): Promise<void> {
    const batch = this.queued;
    if (this.sending || !batch) return;
    this.queued = null;
    this.sending = true;
    try {
      const payloads = batch.messages;
      // One retry: a pool connection the server dropped fails the first attempt only.
      await run(this.db, SQL.notifyEach, { channel: CACHE_INVALIDATION_CHANNEL, payloads }).catch(() =>
        run(this.db, SQL.notifyEach, { channel: CACHE_INVALIDATION_CHANNEL, payloads }),
      );
      this.sent.statements++;
      this.sent.messages += payloads.length;
      batch.resolve();
    } catch (err) {
      batch.reject(err);
    } finally {
      this.sending = false;
      if (this.queued) void this.flush();
    }
  }

  /**
   * The committed versions of the sessions among `ids` (keys `<tenant>/<id>`); a session
   * without a row is left out. The near cache checks its entries with it.
   */
  async committedVersions(ids: readonly string[]): Promise<Map<string, number>> {
    const tenants: string[] = [];
    const sessionIds: string[] = [];
    for (const key of ids) {
      const parts = splitSessionKey(key);
      if (!parts) continue;
      tenants.push(parts.tenant);
      sessionIds.push(parts.id);
    }
    const found = new Map<string, number>();
    if (tenants.length === 0) return found;
    const rows = await run<{ tenant_id: string; id: string; version: string | number }>(this.db, SQL.sessionVersions, {
      tenants,
      ids: sessionIds,
    });
    for (const r of rows) found.set(`${r.tenant_id}/${r.id}`, Number(r.version));
    return found;
  }

  async close(): Promise<void> {
    const unlisten = this.unlisten;
    this.unlisten = null;
    await unlisten?.();
  }
}
