/**
 * Concurrent writes to one session on PostgreSQL (READ COMMITTED). A statement reads on the
 * snapshot it started with, which can be older than the row it then locks; every guard and
 * every read that decides a write must use the locked row (or read after the lock), or a
 * write that queued behind another is judged on stale data. Each test lets many writers
 * race and accepts only the documented outcomes: success, or the one 409 (or 413) that
 * applies, with counts and event chains exact.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentSessionsError } from '../../src/core/errors.js';
import type { SessionLifetimes } from '../../src/core/ports.js';
import { statusesLeadingTo, type NewItem, type Session, type SessionStatus } from '../../src/core/types.js';
import { PgDatabase, type SqlDatabase } from '../../src/adapters/postgres/database.js';
import { migrate } from '../../src/adapters/postgres/migrator.js';
import { PostgresSessionRepository } from '../../src/adapters/postgres/session-repository.js';
import { PostgresSessionLockStore } from '../../src/adapters/postgres/session-locks.js';
import { PostgresSweepStore } from '../../src/adapters/postgres/sweeps.js';
import { freshDatabase, requireServices, within, type FreshDatabase } from '../setup/harness.js';

const ready = requireServices(['postgres'], 'adapters/session-races');

const TENANT = 'races';
const FOREVER: SessionLifetimes = { ttlSeconds: null, idleTimeoutSeconds: null, absoluteTimeoutSeconds: null };
const METADATA_LIMIT = 4096;

type Outcome<T> = { ok: true; value: T } | { ok: false; code: string; status?: unknown };

async function settle<T>(work: Promise<T>): Promise<Outcome<T>> {
  try {
    return { ok: true, value: await work };
  } catch (err) {
    if (!(err instanceof AgentSessionsError)) throw err;
    // A refused status change says which status it was judged on.
    return err.details?.status === undefined ? { ok: false, code: err.code } : { ok: false, code: err.code, status: err.details.status };
  }
}

function item(content: string, role = 'user'): NewItem & { id: string } {
  return { id: randomUUID(), role, type: 'message', content };
}

describe.skipIf(!ready)('adapters/session-races', () => {
  let fresh: FreshDatabase;
  let db: PgDatabase;
  let repo: PostgresSessionRepository;

  beforeAll(async () => {
    fresh = await freshDatabase();
    db = new PgDatabase({ connectionString: fresh.url, max: 24 });
    await migrate(db);
    repo = new PostgresSessionRepository(db, { metadataLimitBytes: METADATA_LIMIT });
  });

  afterAll(async () => {
    await db?.close();
    await fresh?.drop();
  });

  async function created(lifetimes: SessionLifetimes = FOREVER): Promise<Session> {
    return repo.create(TENANT, randomUUID(), {}, lifetimes);
  }

  async function events(sessionId: string): Promise<Array<{ type: string; payload: Record<string, unknown> }>> {
    return db.query('SELECT type, payload FROM outbox WHERE session_id = $1 ORDER BY id', [sessionId]);
  }

  async function storedItems(sessionId: string): Promise<Array<{ seq: number; content: unknown }>> {
    const rows = await db.query<{ seq: number; content: unknown }>(
      'SELECT seq, content FROM session_items WHERE session_id = $1 ORDER BY seq',
      [sessionId],
    );
    return rows.map((r) => ({ seq: Number(r.seq), content: r.content }));
  }

  /** Backends of this database waiting for a lock (the statement under test, queued behind the open transaction). */
  async function lockWaiters(): Promise<number> {
    const [row] = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`,
    );
    return Number(row?.n ?? 0);
  }

  /**
   * Opens a transaction that writes the session with `first` (through the repository), starts
   * `queued` (which must then wait for the session row), and commits once it waits: `queued`
   * began on a snapshot without that write and runs after it committed.
   */
  async function behind<T>(first: (inTransaction: PostgresSessionRepository) => Promise<unknown>, queued: () => Promise<T>): Promise<T> {
    const { pending } = await db.transaction(async (tx) => {
      // The repository only queries, so the transaction can stand in for its database.
      await first(new PostgresSessionRepository(tx as unknown as SqlDatabase));
      const started = settle(queued());
      await within(5_000, async () => (await lockWaiters()) > 0, 5);
      return { pending: started };
    });
    const outcome = await pending;
    if (!outcome.ok) throw new Error(`queued write failed with ${outcome.code}`);
    return outcome.value;
  }

  it('a pop that waited for the row takes the item appended meanwhile, not the last one of its snapshot', async () => {
    const s = await created();
    await repo.appendItems(TENANT, s.id, [item('first')], {});
    const popped = await behind(
      (r) => r.appendItems(TENANT, s.id, [item('second', 'assistant')], {}),
      () => repo.popItem(TENANT, s.id, {}),
    );
    expect(popped.item).toMatchObject({ seq: 2, content: 'second' });
    expect(await storedItems(s.id)).toEqual([{ seq: 1, content: 'first' }]);
  });

  it('a clear that waited for the row also removes the item appended meanwhile', async () => {
    const s = await created();
    await repo.appendItems(TENANT, s.id, [item('first')], {});
    const cleared = await behind(
      (r) => r.appendItems(TENANT, s.id, [item('second', 'assistant')], {}),
      () => repo.clearItems(TENANT, s.id, {}),
    );
    expect(cleared.removed).toBe(2);
    expect(await storedItems(s.id)).toEqual([]);
  });

  it('a retried append by client_id that waited for the row answers the item the first one stored', async () => {
    const s = await created();
    const retried = await behind(
      (r) => r.appendItems(TENANT, s.id, [{ ...item('hello'), clientId: 'm1' }], {}),
      () => repo.appendItems(TENANT, s.id, [{ ...item('hello'), clientId: 'm1' }], {}),
    );
    expect(retried.items[0]).toMatchObject({ seq: 1, clientId: 'm1', content: 'hello' });
    expect(retried.session.version).toBe(s.version + 1);
    expect(await storedItems(s.id)).toEqual([{ seq: 1, content: 'hello' }]);
    expect((await events(s.id)).map((e) => e.type)).toEqual(['session.created', 'item.added']);
  });

  it('a replacing append that waited for the row replaces the item appended meanwhile', async () => {
    const s = await created();
    const replaced = await behind(
      (r) => r.appendItems(TENANT, s.id, [{ ...item('draft', 'assistant'), clientId: 'a1' }], {}),
      () => repo.appendItems(TENANT, s.id, [{ ...item('final', 'assistant'), clientId: 'a1' }], {}),
    );
    expect(replaced.items[0]).toMatchObject({ seq: 1, clientId: 'a1', content: 'final' });
    expect(await storedItems(s.id)).toEqual([{ seq: 1, content: 'final' }]);
    expect((await events(s.id)).map((e) => e.type)).toEqual(['session.created', 'item.added', 'item.updated']);
  });

  it('concurrent appends of one client_id store it once and all answer that item', async () => {
    const s = await created();
    const outcomes = await Promise.all(
      Array.from({ length: 16 }, () => settle(repo.appendItems(TENANT, s.id, [{ ...item('once'), clientId: 'same' }], {}))),
    );
    const answers = outcomes.map((o) => {
      if (!o.ok) throw new Error(`an append failed with ${o.code}`);
      return o.value.items[0];
    });
    expect(new Set(answers.map((i) => i?.id)).size).toBe(1);
    expect(answers.every((i) => i?.seq === 1)).toBe(true);
    expect(await storedItems(s.id)).toEqual([{ seq: 1, content: 'once' }]);
    const [row] = await db.query<{ version: string; item_seq: string }>('SELECT version, item_seq FROM sessions WHERE id = $1', [s.id]);
    expect({ version: Number(row?.version), itemSeq: Number(row?.item_seq) }).toEqual({ version: s.version + 1, itemSeq: 1 });
    expect((await events(s.id)).map((e) => e.type)).toEqual(['session.created', 'item.added']);
  });

  it('appends, pops and clears racing on one history behave as a stack in commit order', async () => {
    const s = await created();
    type Op =
      | { kind: 'append'; seqs: number[]; version: number }
      | { kind: 'pop'; seq: number | null; version: number }
      | { kind: 'clear'; removed: number; version: number };
    const work: Array<Promise<Op>> = [];
    for (let i = 0; i < 90; i++) {
      if (i % 3 === 1) {
        work.push(repo.popItem(TENANT, s.id, {}).then((r) => ({ kind: 'pop', seq: r.item?.seq ?? null, version: r.session.version })));
      } else if (i % 30 === 29) {
        work.push(repo.clearItems(TENANT, s.id, {}).then((r) => ({ kind: 'clear', removed: r.removed, version: r.session.version })));
      } else {
        const batch = [item(`a${i}`), item(`b${i}`, 'assistant')].slice(0, 1 + (i % 2));
        work.push(
          repo.appendItems(TENANT, s.id, batch, {}).then((r) => ({ kind: 'append', seqs: r.items.map((x) => x.seq), version: r.session.version })),
        );
      }
    }
    const ops = (await Promise.all(work)).sort((a, b) => a.version - b.version);
    // Every write bumped the version once: the versions are the commit order.
    expect(ops.map((o) => o.version)).toEqual(ops.map((_, i) => i + 2));
    const stack: number[] = [];
    let lastSeq = 0;
    for (const op of ops) {
      if (op.kind === 'append') {
        expect(op.seqs).toEqual(op.seqs.map((_, i) => lastSeq + 1 + i));
        lastSeq += op.seqs.length;
        stack.push(...op.seqs);
      } else if (op.kind === 'pop') {
        expect(op.seq).toBe(stack.pop() ?? null);
      } else {
        expect(op.removed).toBe(stack.length);
        stack.length = 0;
      }
    }
    expect((await storedItems(s.id)).map((i) => i.seq)).toEqual(stack);
  });

  it('a status change that waited for the row is judged on the status it follows, not its snapshot', async () => {
    const s = await repo.create(TENANT, randomUUID(), { status: 'initializing' }, FOREVER);
    await repo.update(TENANT, s.id, { status: 'active' }, {});
    // active -> expired is not a transition; idle -> expired is, and idle is what it follows.
    const expired = await behind(
      (r) => r.update(TENANT, s.id, { status: 'idle' }, {}),
      () => repo.update(TENANT, s.id, { status: 'expired' }, {}),
    );
    expect(expired).toMatchObject({ status: 'expired', version: 4, endReason: 'expired' });
    expect((await events(s.id)).filter((e) => e.type === 'session.status_changed').map((e) => e.payload)).toEqual([
      { from: 'initializing', to: 'active', version: 2 },
      { from: 'active', to: 'idle', version: 3 },
      { from: 'idle', to: 'expired', version: 4 },
    ]);
  });

  it('a conditional increment that waited for the row is judged on the revision it follows, not its snapshot', async () => {
    const s = await created();
    // The increment's snapshot has revision 1; the row it gets is at revision 2, which it names.
    const counted = await behind(
      (r) => r.update(TENANT, s.id, { title: 'renamed' }, {}),
      () => repo.incrementCounters(TENANT, s.id, { totalTurns: 1 }, { expectedRevision: 2 }),
    );
    expect(counted).toMatchObject({ totalTurns: 1, revision: 2, version: 3, title: 'renamed' });
    // Naming the revision its snapshot had is a conflict once the row it waited for is newer.
    const stale = await db.transaction(async (tx) => {
      await new PostgresSessionRepository(tx as unknown as SqlDatabase).update(TENANT, s.id, { title: 'again' }, {});
      const started = settle(repo.incrementCounters(TENANT, s.id, { totalTurns: 1 }, { expectedRevision: 2 }));
      await within(5_000, async () => (await lockWaiters()) > 0, 5);
      return { started };
    });
    expect(await stale.started).toEqual({ ok: false, code: 'version_conflict' });
    expect(await repo.get(TENANT, s.id)).toMatchObject({ totalTurns: 1, revision: 3, version: 4 });
  });

  it('status changes from many writers are judged in commit order, and the events chain', async () => {
    const targets: SessionStatus[] = ['idle', 'expired', 'waiting_input', 'active', 'expired', 'idle', 'initializing', 'active'];
    for (let round = 0; round < 12; round++) {
      const s = await created();
      await repo.update(TENANT, s.id, { status: 'active' }, {});
      const outcomes = await Promise.all(targets.map((status) => settle(repo.update(TENANT, s.id, { status }, {}))));
      // A refusal names the status it was judged on; the transition must really not start there.
      outcomes.forEach((o, i) => {
        if (o.ok) return;
        const target = targets[i] as SessionStatus;
        if (o.code === 'invalid_transition') expect(statusesLeadingTo(target)).not.toContain(o.status);
        else expect(o).toMatchObject({ code: 'session_ended', status: 'expired' });
      });
      // The successes, in commit order, are each a transition from the status before.
      const landed = outcomes
        .map((o, i) => (o.ok ? { version: o.value.version, status: targets[i] as SessionStatus } : null))
        .filter((x) => x !== null)
        .sort((a, b) => a.version - b.version);
      let status: SessionStatus = 'active';
      for (const w of landed) {
        expect(statusesLeadingTo(w.status)).toContain(status);
        status = w.status;
      }
      const final = await repo.get(TENANT, s.id);
      expect(final).toMatchObject({ status, version: 2 + landed.length });
      let from = 'idle';
      for (const e of (await events(s.id)).filter((x) => x.type === 'session.status_changed')) {
        expect(e.payload.from).toBe(from);
        from = String(e.payload.to);
      }
      expect(from).toBe(status);
    }
  });

  it('conditional writes from many writers: every refusal is a version conflict and every success counts', async () => {
    const s = await created();
    const writers = 12;
    const rounds = 3;
    const refusals: string[] = [];
    await Promise.all(
      Array.from({ length: writers }, async (_, w) => {
        for (let done = 0; done < rounds; ) {
          const current = await repo.get(TENANT, s.id);
          const outcome = await settle(repo.update(TENANT, s.id, { title: `w${w}r${done}` }, { expectedRevision: current?.revision }));
          if (outcome.ok) done++;
          else refusals.push(outcome.code);
        }
      }),
    );
    expect(new Set(refusals)).toEqual(new Set(refusals.length > 0 ? ['version_conflict'] : []));
    expect((await repo.get(TENANT, s.id))?.version).toBe(1 + writers * rounds);
    expect((await events(s.id)).filter((e) => e.type === 'session.updated')).toHaveLength(writers * rounds);
  });

  it('terminate racing updates: each update lands before the terminate or fails with session_ended', async () => {
    const s = await created();
    const work = Array.from({ length: 40 }, (_, i) =>
      i === 20 ? settle(repo.terminate(TENANT, s.id, 'raced', {})) : settle(repo.update(TENANT, s.id, { title: `t${i}` }, {})),
    );
    const outcomes = await Promise.all(work);
    const terminated = outcomes[20] as Outcome<Session>;
    expect(terminated.ok).toBe(true);
    const endVersion = terminated.ok ? terminated.value.version : 0;
    const updates = outcomes.filter((_, i) => i !== 20);
    for (const o of updates) {
      if (o.ok) expect(o.value.version).toBeLessThan(endVersion);
      else expect(o.code).toBe('session_ended');
    }
    const landed = updates.filter((o) => o.ok).length;
    expect(endVersion).toBe(landed + 2);
    const log = await events(s.id);
    expect(log.filter((e) => e.type === 'session.updated')).toHaveLength(landed);
    expect(log.filter((e) => e.type === 'session.terminated')).toHaveLength(1);
    expect(log.at(-1)).toMatchObject({ type: 'session.terminated', payload: { reason: 'raced', version: endVersion } });
  });

  it('overlapping batch terminations and single ones end each session once', async () => {
    const batch = await Promise.all(Array.from({ length: 8 }, () => created()));
    const ids = batch.map((s) => s.id);
    const work: Array<Promise<unknown>> = [];
    for (let i = 0; i < 6; i++) {
      // Overlapping batches in different orders must not deadlock (rows are locked in id order).
      work.push(repo.terminateMany(TENANT, i % 2 ? ids : [...ids].reverse(), `batch${i}`));
      work.push(settle(repo.terminate(TENANT, ids[i] as string, 'single', {})));
      work.push(settle(repo.update(TENANT, ids[(i + 3) % ids.length] as string, { title: 'x' }, {})));
    }
    await Promise.all(work);
    for (const id of ids) {
      const log = await events(id);
      expect(log.filter((e) => e.type === 'session.terminated')).toHaveLength(1);
      expect((await repo.get(TENANT, id))?.status).toBe('terminated');
    }
  });

  it('concurrent metadata merges stop exactly where the merged size limit is reached', async () => {
    const s = await created();
    // Each writer adds one key; its JSON text takes the same number of bytes for every writer.
    const outcomes = await Promise.all(
      Array.from({ length: 60 }, (_, i) =>
        settle(repo.update(TENANT, s.id, { metadata: { [`k${String(i).padStart(2, '0')}`]: 'x'.repeat(100) } }, {})),
      ),
    );
    const landed = outcomes.filter((o) => o.ok).length;
    expect(outcomes.filter((o) => !o.ok).every((o) => !o.ok && o.code === 'limit_exceeded')).toBe(true);
    const [row] = await db.query<{ keys: number; bytes: number; one: number }>(
      `SELECT (SELECT count(*) FROM jsonb_object_keys(metadata))::int AS keys, octet_length(metadata::text) AS bytes,
         octet_length('{"k00": "${'x'.repeat(100)}"}') AS one
       FROM sessions WHERE id = $1`,
      [s.id],
    );
    expect(row?.keys).toBe(landed);
    expect(Number(row?.bytes)).toBeLessThanOrEqual(METADATA_LIMIT);
    // One more key (its entry, `one` without the braces, plus a ", " separator) would not have
    // fitted: no write was refused while it fitted.
    expect(Number(row?.bytes) + Number(row?.one)).toBeGreaterThan(METADATA_LIMIT);
  });

  it('concurrent sweepers warn and expire each due session exactly once while writers race them', async () => {
    const sweeps = new PostgresSweepStore(db);
    const due = await Promise.all(Array.from({ length: 30 }, () => created({ ...FOREVER, idleTimeoutSeconds: 600 })));
    const ids = due.map((s) => s.id);
    // Idle for longer than the timeout: every one is past its deadline, none was warned.
    await db.query(
      `UPDATE sessions SET last_active_at = now() - interval '700 seconds' WHERE id IN (SELECT jsonb_array_elements_text($1::jsonb))`,
      [JSON.stringify(ids)],
    );
    const expired: string[] = [];
    const sweeper = async () => {
      for (;;) {
        const refs = await sweeps.expireDue(4);
        if (refs.length === 0) return;
        expired.push(...refs.map((r) => r.id));
      }
    };
    const writers = ids.slice(0, 10).map((id) => settle(repo.touch(TENANT, id, {})));
    await Promise.all([sweeper(), sweeper(), sweeper(), ...writers]);
    for (const w of await Promise.all(writers)) expect(w).toMatchObject({ ok: false, code: 'session_ended' });
    expect(expired.sort()).toEqual([...ids].sort());
    for (const id of ids) {
      expect((await events(id)).map((e) => e.type)).toEqual([
        'session.created',
        'session.timeout_warning',
        'session.status_changed',
        'session.expired',
      ]);
    }
  });

  it('concurrent warning sweeps warn each session once', async () => {
    const sweeps = new PostgresSweepStore(db);
    const near = await Promise.all(Array.from({ length: 20 }, () => created({ ...FOREVER, idleTimeoutSeconds: 600 })));
    const ids = near.map((s) => s.id);
    await db.query(
      `UPDATE sessions SET last_active_at = now() - interval '500 seconds' WHERE id IN (SELECT jsonb_array_elements_text($1::jsonb))`,
      [JSON.stringify(ids)],
    );
    const warned: string[] = [];
    const sweeper = async () => {
      for (;;) {
        const refs = await sweeps.warnExpiring(300, 3);
        if (refs.length === 0) return;
        warned.push(...refs.map((r) => r.id).filter((id) => ids.includes(id)));
      }
    };
    await Promise.all([sweeper(), sweeper(), sweeper()]);
    expect(warned.sort()).toEqual([...ids].sort());
    for (const id of ids) expect((await events(id)).filter((e) => e.type === 'session.timeout_warning')).toHaveLength(1);
  });

  it('concurrent purges of ended sessions delete each once', async () => {
    const sweeps = new PostgresSweepStore(db);
    const ended = await Promise.all(Array.from({ length: 20 }, () => created()));
    const ids = ended.map((s) => s.id);
    await repo.terminateMany(TENANT, ids, 'done');
    await db.query(
      `UPDATE sessions SET ended_at = now() - interval '40 days' WHERE id IN (SELECT jsonb_array_elements_text($1::jsonb))`,
      [JSON.stringify(ids)],
    );
    const purged: string[] = [];
    const sweeper = async () => {
      for (;;) {
        const refs = await sweeps.purgeEnded(30, 3);
        if (refs.length === 0) return;
        purged.push(...refs.map((r) => r.id));
      }
    };
    await Promise.all([sweeper(), sweeper(), sweeper(), repo.purgeMany(TENANT, ids.slice(0, 5))]);
    const deleted = await db.query<{ session_id: string }>(
      `SELECT session_id FROM outbox WHERE type = 'session.deleted' AND session_id IN (SELECT jsonb_array_elements_text($1::jsonb))`,
      [JSON.stringify(ids)],
    );
    expect(deleted.map((r) => r.session_id).sort()).toEqual([...ids].sort());
    expect(await repo.getMany(TENANT, ids)).toEqual([]);
  });

  it('leases: one holder among many takers, and the holder’s concurrent renewals all succeed', async () => {
    const locks = new PostgresSessionLockStore(db);
    const s = await created();
    const leases = (await Promise.all(Array.from({ length: 20 }, () => locks.tryAcquire(TENANT, s.id, 5_000)))).filter((l) => l !== null);
    expect(leases).toHaveLength(1);
    const lease = leases[0]!;
    expect(await Promise.all(Array.from({ length: 20 }, () => lease.renew(5_000)))).toEqual(Array(20).fill(true));
    await lease.release();
    const next = await locks.tryAcquire(TENANT, s.id, 5_000);
    expect(next?.fencingToken).toBe(lease.fencingToken + 1);
    await next?.release();
  });
});
