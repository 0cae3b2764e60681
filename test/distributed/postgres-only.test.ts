/**
 * PostgreSQL-only distributed mode (DATABASE_URL without REDIS_URL): each instance has a
 * near cache, kept coherent over LISTEN/NOTIFY. PostgreSQL delivers a notification to each
 * listening connection on its own schedule, so another instance sees a write once its copy
 * has arrived (milliseconds), not strictly on the very next read: these tests wait for it
 * within a bound (docs/distributed.md). The bound is generous (a loaded machine can delay a
 * notification or a read by far more than the usual milliseconds); without the notification
 * the near cache would serve the old snapshot for CACHE_TTL_MS (60 s), so it still proves it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSessions, type Sessions, internals } from '../../src/internal.js';
import { PgNotifyInvalidationBus } from '../../src/adapters/postgres/pg-invalidation-bus.js';
import { freshDatabase, requireServices, uniqueToken, within, type FreshDatabase } from '../setup/harness.js';
import { startServer } from '../setup/server-process.js';

const suite = 'distributed/postgres-only';
const ready = requireServices(['postgres'], suite);

const BOUND_MS = 10_000;

describe.skipIf(!ready)(suite, () => {
  let db: FreshDatabase;
  let a: Sessions;
  let b: Sessions;

  beforeAll(async () => {
    db = await freshDatabase();
    a = await createSessions({ env: { DATABASE_URL: db.url, INSTANCE_ID: 'a' } });
    b = await createSessions({ env: { DATABASE_URL: db.url, INSTANCE_ID: 'b' } });
  });

  afterAll(async () => {
    await a?.close();
    await b?.close();
    await db?.drop();
  });

  it('has a near cache in front of PostgreSQL', async () => {
    const s = await a.create();
    await a.get(s.id);
    await a.get(s.id);
    expect(internals(a).cacheStats().near?.hits).toBeGreaterThan(0);
  });

  it('create on A, read on B; an update on B reaches A’s near cache within the bound', async () => {
    const s = await a.create({ title: 'one' });
    expect((await b.get(s.id)).title).toBe('one');
    await a.get(s.id);
    const lags: number[] = [];
    for (let i = 0; i < 20; i++) {
      const u = await b.update(s.id, { title: `v${i}` });
      lags.push(await within(BOUND_MS, async () => (await a.get(s.id)).version === u.version));
      await a.get(s.id);
    }
    const sorted = [...lags].sort((x, y) => x - y);
    console.log(`[postgres-only] update on B -> visible on A: median ${sorted[10]} ms, max ${sorted.at(-1)} ms`);
  });

  it('a run started on A shows its session active on B, and idle again after, through B’s near cache', async () => {
    const s = await a.create();
    await b.get(s.id);
    await b.get(s.id);
    let release = () => undefined as void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const run = await a.runs.start(s.id, async () => held);
    await within(BOUND_MS, async () => (await b.get(s.id)).status === 'active');
    release();
    await a.runs.wait(s.id, run.id);
    await within(BOUND_MS, async () => (await b.get(s.id)).status !== 'active');
  });

  it('a delete on A is gone on B, even from B’s near cache', async () => {
    const s = await a.create();
    await b.get(s.id);
    await b.get(s.id);
    await a.purge(s.id);
    await within(BOUND_MS, async () => (await b.find(s.id)) === null);
  });

  /**
   * A database where an unqualified pg_notify resolves to a function that always fails, so
   * every notification sent as its own statement after the commit is lost (the writers' own
   * `notify-each`): B's near cache learns of the writes only from its check of the committed
   * versions (CACHE_REVALIDATE_MS, 5 s by default, inside the bound).
   */
  async function brokenNotifyDatabase(): Promise<FreshDatabase> {
    const broken = await freshDatabase();
    const setup = await createSessions({ env: { DATABASE_URL: broken.url, INSTANCE_ID: 'setup' } });
    await internals(setup).db.exec(`
      CREATE FUNCTION public.pg_notify(text, text) RETURNS void LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION 'notification lost'; END $$;
      ALTER DATABASE ${broken.name} SET search_path = public, pg_catalog;`);
    await setup.close();
    return broken;
  }

  it('a NOTIFY that fails after the commit cannot leave B stale: the version check drops the older entry', async () => {
    const broken = await brokenNotifyDatabase();
    const a2 = await createSessions({ env: { DATABASE_URL: broken.url, INSTANCE_ID: 'a2' } });
    const b2 = await createSessions({ env: { DATABASE_URL: broken.url, INSTANCE_ID: 'b2' } });
    try {
      const s = await a2.create({ title: 'one' });
      await b2.get(s.id);
      await b2.get(s.id);
      const u = await a2.update(s.id, { title: 'two' });
      await within(BOUND_MS, async () => (await b2.get(s.id)).version === u.version);
      await a2.purge(s.id);
      await within(BOUND_MS, async () => (await b2.find(s.id)) === null);
    } finally {
      await a2.close();
      await b2.close();
      await broken.drop();
    }
  });

  it('sweeps too: an expiry and a retention purge whose NOTIFY fails reach B through the version check', async () => {
    const broken = await brokenNotifyDatabase();
    const env = { DATABASE_URL: broken.url, SWEEP_INTERVAL_MS: '0', RETENTION_DAYS: '1', TIMEOUT_WARNING_SECONDS: '0' };
    const a2 = await createSessions({ env: { ...env, INSTANCE_ID: 'a2' } });
    const b2 = await createSessions({ env: { ...env, INSTANCE_ID: 'b2' } });
    try {
      const expiring = await a2.create({ ttlSeconds: 1 });
      const ended = await a2.create();
      await a2.terminate(ended.id);
      // B caches both.
      await b2.get(expiring.id);
      await within(BOUND_MS, async () => (await b2.get(ended.id)).status === 'terminated');
      await internals(a2).db.query(`UPDATE sessions SET ended_at = now() - interval '2 days' WHERE id = $1`, [ended.id]);
      await within(BOUND_MS, async () => {
        await a2.sweeper.runOnce();
        const [row] = await internals(a2).db.query<{ version: number }>('SELECT version FROM sessions WHERE id = $1', [expiring.id]);
        return row?.version === expiring.version + 1;
      });
      // The expiry bumped the version; B's copy follows without any separate notification.
      await within(BOUND_MS, async () => (await b2.get(expiring.id)).version === expiring.version + 1);
      await within(BOUND_MS, async () => (await b2.find(ended.id)) === null);
    } finally {
      await a2.close();
      await b2.close();
      await broken.drop();
    }
  });

  /**
   * A writer notifies after its commit, so a writer that dies in between leaves a committed
   * write nobody was told of. A statement run directly on the database leaves the same: B's
   * near cache drops its entry at its next check of the committed versions
   * (CACHE_REVALIDATE_MS, 5 s by default), well inside the bound.
   */
  it('a write committed without any notification (its writer died after the commit) leaves B’s near cache at B’s next version check', async () => {
    const updated = await a.create({ title: 'one' });
    const deleted = await a.create({ title: 'one' });
    for (const s of [updated, deleted]) {
      await b.get(s.id);
      await b.get(s.id);
    }
    await internals(a).db.query(`UPDATE sessions SET title = 'two', version = version + 1 WHERE tenant_id = 'default' AND id = $1`, [updated.id]);
    await internals(a).db.query(`DELETE FROM sessions WHERE tenant_id = 'default' AND id = $1`, [deleted.id]);
    const [lagUpdated, lagDeleted] = await Promise.all([
      within(BOUND_MS, async () => (await b.get(updated.id)).title === 'two', 10),
      within(BOUND_MS, async () => (await b.find(deleted.id)) === null, 10),
    ]);
    console.log(`[postgres-only] unannounced update / delete -> dropped on B after ${lagUpdated} / ${lagDeleted} ms`);
    expect((await b.get(updated.id)).version).toBe(updated.version + 1);
  });

  it('a writer process SIGKILLed between its commit and its notification: B drops its older entry at B’s next version check', async () => {
    const s = await a.create();
    await b.get(s.id);
    await b.get(s.id);
    const admin = `pg-only-kill-${uniqueToken()}`;
    // The test-only fault point kills the process right after an idempotent call committed,
    // before its effects (the cache update and the notification) run.
    const doomed = await startServer({
      env: { DATABASE_URL: db.url, ADMIN_API_KEY: admin, INSTANCE_ID: 'doomed', NODE_ENV: 'test', TEST_FAULT_KILL_AFTER_COMMIT: '1' },
      timeoutMs: 90_000,
    });
    try {
      const answer = fetch(`${doomed.url}/v1/sessions/${s.id}/counters`, {
        method: 'POST',
        headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json', 'idempotency-key': `kill-${uniqueToken()}` },
        body: JSON.stringify({ total_turns: 1 }),
        signal: AbortSignal.timeout(30_000),
      });
      await expect(answer).rejects.toThrow();
      expect(await doomed.stop()).toBeNull();
      expect(doomed.child.signalCode).toBe('SIGKILL');
    } finally {
      await doomed.stop().catch(() => undefined);
    }
    const [row] = await internals(a).db.query<{ version: number }>('SELECT version FROM sessions WHERE id = $1', [s.id]);
    expect(Number(row?.version)).toBe(s.version + 1);
    const lag = await within(BOUND_MS, async () => (await b.get(s.id)).totalTurns === 1, 10);
    console.log(`[postgres-only] write of a killed writer -> dropped on B after ${lag} ms`);
  });

  it('concurrent writes on both instances: each is seen on the other instance', async () => {
    const sessions = await Promise.all(Array.from({ length: 20 }, () => a.create()));
    for (const s of sessions) {
      await a.get(s.id);
      await b.get(s.id);
    }
    // 200 updates at once, each session written by both instances; after each is
    // acknowledged, the other instance returns that version or a newer one within the bound.
    const lags = await Promise.all(
      Array.from({ length: 200 }, async (_, i) => {
        const s = sessions[i % sessions.length] as (typeof sessions)[number];
        const [writer, other] = i % 2 ? [a, b] : [b, a];
        const u = await writer.update(s.id, { title: `t${i}` });
        return within(BOUND_MS, async () => (await other.get(s.id)).version >= u.version, 5);
      }),
    );
    console.log(`[postgres-only] 200 concurrent updates: seen on the other instance after at most ${Math.max(...lags)} ms`);
    for (const s of sessions) {
      const [row] = await internals(a).db.query<{ version: number }>('SELECT version FROM sessions WHERE id = $1', [s.id]);
      expect((await a.get(s.id)).version).toBe(Number(row?.version));
      expect((await b.get(s.id)).version).toBe(Number(row?.version));
    }
  });

  it('the invalidations of writes finishing together go out together, and every one is delivered', async () => {
    const bus = new PgNotifyInvalidationBus(internals(a).db);
    const token = `coalesce-${Date.now().toString(36)}`;
    const heard = new Set<string>();
    await bus.start({ onInvalidate: (id) => id.startsWith(token) && heard.add(id), onReset: () => undefined });
    try {
      // 300 writers: each finishes a statement of its own, then publishes, as a session write does.
      await Promise.all(
        Array.from({ length: 300 }, async (_, i) => {
          await internals(a).db.query('SELECT 1');
          await bus.publish(`${token}/${i}`, 1);
        }),
      );
      await within(BOUND_MS, async () => heard.size === 300, 5);
      console.log(`[postgres-only] 300 invalidations went out in ${bus.sent.statements} statements`);
      expect(bus.sent.messages).toBe(300);
      expect(bus.sent.statements).toBeLessThanOrEqual(150);
    } finally {
      await bus.close();
    }
  });

  it('counters incremented on both instances are exact on both', async () => {
    const s = await a.create();
    await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).incrementCounters(s.id, { totalTurns: 1 })));
    await within(BOUND_MS, async () => (await a.get(s.id)).totalTurns === 20);
    await within(BOUND_MS, async () => (await b.get(s.id)).totalTurns === 20);
    const rows = await internals(a).db.query<{ total_turns: number }>('SELECT total_turns FROM sessions WHERE id = $1', [s.id]);
    expect(Number(rows[0]?.total_turns)).toBe(20);
  });
});
