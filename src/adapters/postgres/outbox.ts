/**
 * The outbox on PostgreSQL (pg or PGlite), for the relay (claim, publish, mark) and the event
 * feed (read in id order up to a gap-free horizon): sql/outbox-*.sql. Events are written by
 * the writes themselves (the one outbox writer, OUTBOX_WRITER in sql.ts), in the same statement as the change.
 */
import type { EventEnvelope, EventLog, EventPage, EventQuery, OutboxStore } from '../../core/ports.js';
import type { SqlDatabase } from './database.js';
import { OUTBOX_CHANNEL, type OutboxSignal } from './outbox-signal.js';
import { iso, strOrNull, type Row } from './rows.js';
import { run, statements } from './sql.js';

/** Advisory-lock class for "a relay is publishing this session's events" (any constant works). */
const RELAY_LOCK_CLASS = 1_095_520_051;

const SQL = statements('outboxClaim', 'outboxMark', 'outboxRead', 'outboxHorizonLatest', 'outboxHorizonWriters');

function rowToEvent(r: Row): EventEnvelope {
  return {
    id: Number(r.id),
    type: String(r.type),
    tenantId: String(r.tenant_id),
    sessionId: strOrNull(r.session_id),
    occurredAt: iso(r.created_at),
    data: r.payload ?? null,
  };
}

interface Candidate {
  /** Ids up to this were handed out before `holders` was sampled. */
  latest: number;
  /** Transactions that could still insert an event with an id up to `latest`. */
  holders: Set<string>;
}

export class PostgresOutbox implements OutboxStore, EventLog {
  private candidates: Candidate[] = [];
  private safe = 0;
  private sampling: Promise<{ horizon: number; latest: number }> | null = null;

  /** @param signal local commits; without it only NOTIFY (other instances) and polls wake listeners. */
  constructor(
    private readonly db: SqlDatabase,
    private readonly signal: OutboxSignal | null = null,
  ) {}

  async relay(
    limit: number,
    publish: (events: readonly EventEnvelope[]) => Promise<number[]>,
  ): Promise<{ claimed: number; published: number }> {
    return this.db.transaction(async (tx) => {
      // A session's events go to one relay at a time: the advisory lock (held to commit) keeps
      // every other relay off all of that session's rows, including ones committed after this
      // claim, so they cannot overtake the ones claimed here. Each session's events start at
      // its lowest unpublished id, also when a relay that held it a moment ago failed to
      // publish (see the statement); per session, id order is commit order (every write locks
      // its session row first).
      const rows = await run(tx, SQL.outboxClaim, { lockClass: RELAY_LOCK_CLASS, limit });
      if (rows.length === 0) return { claimed: 0, published: 0 };
      const acked = await publish(rows.map(rowToEvent));
      if (acked.length > 0) await run(tx, SQL.outboxMark, { ids: JSON.stringify(acked) });
      return { claimed: rows.length, published: acked.length };
      // Not re-run on a conflict: it published; the relay's next round claims what is left.
    }, { retryConflicts: false });
  }

  async onAppend(listener: () => void): Promise<() => Promise<void>> {
    const offLocal = this.signal?.on(listener);
    try {
      const offRemote = await this.db.listen(OUTBOX_CHANNEL, () => listener());
      return async () => {
        offLocal?.();
        await offRemote();
      };
    } catch (err) {
      offLocal?.();
      throw err;
    }
  }

  async read(q: EventQuery): Promise<EventPage> {
    const rows = await run(this.db, SQL.outboxRead, {
      tenant: q.tenant,
      after: q.after,
      upTo: q.upTo,
      types: q.types && q.types.length > 0 ? JSON.stringify(q.types) : null,
      session: q.sessionId ?? null,
      limit: q.limit,
    });
    // One row at least (the horizon); id null: no event matched.
    return {
      events: rows.filter((r) => r.id !== null && r.id !== undefined).map(rowToEvent),
      prunedThrough: Number(rows[0]?.pruned_through ?? 0),
    };
  }

  /**
   * Ids are drawn when a row is inserted but become visible at commit, so a lower id can
   * appear after a higher one. The horizon is the highest id below which nothing can still
   * appear. Sample: read the highest id handed out (L), then list the transactions holding a
   * write lock on the outbox (every inserter takes it before drawing an id and keeps it until
   * it ends). Any transaction with an id <= L drew it before L was read, so it is in that list
   * or already finished. Once none of the listed transactions is still running, every id <= L
   * is final. Concurrent callers share one sample.
   */
  horizon(): Promise<{ horizon: number; latest: number }> {
    this.sampling ??= this.sample().finally(() => {
      this.sampling = null;
    });
    return this.sampling;
  }

  private async sample(): Promise<{ horizon: number; latest: number }> {
    const [seq] = await run<{ latest: string | null }>(this.db, SQL.outboxHorizonLatest);
    const latest = Number(seq?.latest ?? 0);
    if (latest <= this.safe) {
      this.candidates = [];
      return { horizon: this.safe, latest };
    }
    const holders = await run<{ vxid: string }>(this.db, SQL.outboxHorizonWriters);
    const running = new Set(holders.map((h) => h.vxid));
    for (const c of this.candidates) for (const v of c.holders) if (!running.has(v)) c.holders.delete(v);
    this.candidates.push({ latest, holders: running });
    let cleared = -1;
    this.candidates.forEach((c, i) => {
      if (c.holders.size === 0) cleared = i;
    });
    if (cleared >= 0) {
      // Everything that was still running at an earlier sample and is still running now is in
      // the later sample's set too, so a cleared candidate clears all earlier ones.
      this.safe = Math.max(this.safe, this.candidates[cleared]?.latest ?? 0);
      this.candidates = this.candidates.slice(cleared + 1);
    }
    // A long transaction must not make the list grow without bound: keep the newest few.
    if (this.candidates.length > 64) this.candidates = this.candidates.slice(-64);
    return { horizon: this.safe, latest };
  }
}
