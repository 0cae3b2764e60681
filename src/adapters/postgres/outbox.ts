/**
 * The outbox on PostgreSQL (pg or PGlite), for the relay (claim, publish, mark) and the event
 * feed (read in id order up to a gap-free horizon). Events are inserted by the writes
 * themselves (session-repository.ts), in the same statement as the change.
 */
import type { EventEnvelope, EventLog, EventQuery, OutboxStore } from '../../core/ports.js';
import type { SqlDatabase } from './database.js';
import { OUTBOX_CHANNEL, type OutboxSignal } from './outbox-signal.js';

/** Advisory-lock class for "a relay is publishing this session's events" (any constant works). */
const RELAY_LOCK_CLASS = 1_095_520_051;

type Row = Record<string, unknown>;

const COLUMNS = 'o.id, o.type, o.tenant_id, o.session_id, o.payload, o.created_at';

function rowToEvent(r: Row): EventEnvelope {
  const created = r.created_at instanceof Date ? r.created_at : new Date(String(r.created_at));
  return {
    id: Number(r.id),
    type: String(r.type),
    tenantId: String(r.tenant_id),
    sessionId: r.session_id === null || r.session_id === undefined ? null : String(r.session_id),
    occurredAt: created.toISOString(),
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
      // claim, so they cannot overtake the ones claimed here. Rows are taken in id order,
      // which per session is commit order (every write locks its session row first).
      const rows = await tx.query<Row>(
        `SELECT ${COLUMNS} FROM outbox o
         WHERE o.published_at IS NULL
           AND (o.session_id IS NULL OR pg_try_advisory_xact_lock($1::int, hashtext(o.session_id::text)))
         ORDER BY o.id
         LIMIT $2
         FOR UPDATE OF o SKIP LOCKED`,
        [RELAY_LOCK_CLASS, limit],
      );
      if (rows.length === 0) return { claimed: 0, published: 0 };
      const acked = await publish(rows.map(rowToEvent));
      if (acked.length > 0) {
        await tx.query(
          `UPDATE outbox SET published_at = now()
           WHERE id IN (SELECT (jsonb_array_elements_text($1::jsonb))::bigint) AND published_at IS NULL`,
          [JSON.stringify(acked)],
        );
      }
      return { claimed: rows.length, published: acked.length };
    });
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

  async read(q: EventQuery): Promise<EventEnvelope[]> {
    const params: unknown[] = [q.tenant, q.after, q.upTo];
    const where = ['o.tenant_id = $1', 'o.id > $2::bigint', 'o.id <= $3::bigint'];
    if (q.types && q.types.length > 0) {
      params.push(JSON.stringify(q.types));
      where.push(`o.type IN (SELECT jsonb_array_elements_text($${params.length}::jsonb))`);
    }
    if (q.sessionId !== undefined) {
      params.push(q.sessionId);
      where.push(`o.session_id = $${params.length}::uuid`);
    }
    params.push(q.limit);
    const rows = await this.db.query<Row>(
      `SELECT ${COLUMNS} FROM outbox o WHERE ${where.join(' AND ')} ORDER BY o.id LIMIT $${params.length}`,
      params,
    );
    return rows.map(rowToEvent);
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
    const [seq] = await this.db.query<{ latest: string | null }>(
      `SELECT pg_sequence_last_value('outbox_id_seq'::regclass)::text AS latest`,
    );
    const latest = Number(seq?.latest ?? 0);
    if (latest <= this.safe) {
      this.candidates = [];
      return { horizon: this.safe, latest };
    }
    const holders = await this.db.query<{ vxid: string }>(
      `SELECT DISTINCT l.virtualtransaction AS vxid FROM pg_locks l
       WHERE l.locktype = 'relation' AND l.granted
         AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
         AND l.relation = 'outbox'::regclass
         AND l.mode = 'RowExclusiveLock'
         AND l.pid IS DISTINCT FROM pg_backend_pid()`,
    );
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
