/**
 * Wake-ups for the relay and the event feed when events commit.
 *
 * A NOTIFY inside the writing transaction would be the obvious way, but PostgreSQL serializes
 * the commits of every transaction that has notified (a database-wide lock held through the
 * commit's WAL flush): measured, it cut session creates from ~1,000/s to ~250/s at 16
 * concurrent writers. So writers stay plain, and instead:
 *
 * - in process: the database handle below sees each statement that inserts into the outbox
 *   and, once it has committed, calls the local listeners at once;
 * - across instances: the first such commit schedules one `pg_notify` in a statement of its
 *   own, coalescing every commit within `coalesceMs`, so other instances' relays and feeds
 *   wake too. Only these notifying statements contend for the lock, at most ~1/coalesceMs
 *   per instance.
 *
 * Writers that bypass this process (another tool writing the outbox) are found by the slow poll.
 */
import type { SqlDatabase, SqlExecutor, TransactionOptions } from './database.js';
import { run, statements } from './sql.js';

const SQL = statements('notify');

export const OUTBOX_CHANNEL = 'agent_sessions_outbox';

/** A statement that writes outbox rows (they all do it through OUTBOX_WRITER, sql.ts). */
const OUTBOX_INSERT = /\binsert\s+into\s+outbox\b/i;

/**
 * Whether `text` inserts into the outbox, remembered per text: the statements are a fixed set
 * of long texts (sql/*.sql), and the search cost about 1.5 µs of client CPU per query. Texts
 * past the bound (ad hoc queries) are searched each time.
 */
const outboxWriters = new Map<string, boolean>();
const MAX_REMEMBERED = 1_000;

function writesOutbox(text: string): boolean {
  let writes = outboxWriters.get(text);
  if (writes === undefined) {
    writes = OUTBOX_INSERT.test(text);
    if (outboxWriters.size < MAX_REMEMBERED) outboxWriters.set(text, writes);
  }
  return writes;
}

export class OutboxSignal {
  private readonly listeners = new Set<() => void>();
  private timer: NodeJS.Timeout | null = null;
  private closed = false;

  /**
   * @param notifier where to send the cross-instance NOTIFY; null when no other instance can
   *   share the database (embedded PGlite).
   */
  constructor(
    private readonly notifier: SqlDatabase | null,
    private readonly coalesceMs = 20,
  ) {}

  /** Calls `listener` after every local commit that inserted events. */
  on(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Called after a local statement or transaction that inserted events has committed. */
  committed(): void {
    for (const fn of this.listeners) fn();
    if (!this.notifier || this.closed || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      // A lost NOTIFY only delays other instances until their next poll.
      if (this.notifier) run(this.notifier, SQL.notify, { channel: OUTBOX_CHANNEL, payload: '' }).catch(() => undefined);
    }, this.coalesceMs);
    this.timer.unref();
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}

/**
 * The same database, with commits that inserted outbox rows reported to `signal`. Every
 * adapter built on the returned handle (sessions, runs) is covered without knowing about it.
 */
export function signallingDatabase(db: SqlDatabase, signal: OutboxSignal): SqlDatabase {
  return {
    get kind() {
      return db.kind;
    },
    async query<R>(text: string, params?: readonly unknown[]): Promise<R[]> {
      const rows = await db.query<R>(text, params);
      if (writesOutbox(text)) signal.committed();
      return rows;
    },
    async exec(script: string): Promise<void> {
      await db.exec(script);
      if (writesOutbox(script)) signal.committed();
    },
    async transaction<T>(fn: (tx: SqlExecutor) => Promise<T>, options?: TransactionOptions): Promise<T> {
      let inserted = false;
      const result = await db.transaction((tx) =>
        fn({
          query: <R>(text: string, params?: readonly unknown[]) => {
            if (writesOutbox(text)) inserted = true;
            return tx.query<R>(text, params);
          },
          exec: (script: string) => {
            if (writesOutbox(script)) inserted = true;
            return tx.exec(script);
          },
        }),
        options,
      );
      if (inserted) signal.committed();
      return result;
    },
    get listening() {
      return db.listening;
    },
    listen: (channel, onPayload, onReset) => db.listen(channel, onPayload, onReset),
    ready: () => db.ready(),
    close: () => db.close(),
  };
}
