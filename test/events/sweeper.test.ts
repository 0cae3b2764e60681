/**
 * The sweeps against real PostgreSQL (and embedded PGlite for the cache): idle sessions are
 * warned once and then expired once, even with three instances sweeping at the same time;
 * lifetimes end sessions too; ended sessions are purged after the retention; published
 * events are pruned; expiry does not leave a stale snapshot in the cache.
 */
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createSessions, type Sessions, internals } from '../../src/internal.js';
import { freshDatabase, requireServices, type FreshDatabase } from '../setup/harness.js';
import { waitFor } from './support.js';

interface EventRow {
  id: number;
  type: string;
  session_id: string;
  payload: Record<string, unknown>;
}

const ready = requireServices(['postgres'], 'events/sweeper');

describe.skipIf(!ready)('events/sweeper', () => {
  let db: FreshDatabase;
  let client: pg.Client;
  const open: Sessions[] = [];

  beforeAll(async () => {
    db = await freshDatabase('as_events');
    client = new pg.Client({ connectionString: db.url });
    await client.connect();
    // Migrated up front, so cleaning up after any single test finds the tables.
    await (await createSessions({ env: { DATABASE_URL: db.url, SWEEP_INTERVAL_MS: '0' } })).close();
  });

  afterEach(async () => {
    await Promise.all(open.splice(0).map((s) => s.close()));
    await client.query('TRUNCATE sessions, outbox CASCADE');
  });

  afterAll(async () => {
    await client?.end();
    await db?.drop();
  });

  async function instance(env: Record<string, string>): Promise<Sessions> {
    const s = await createSessions({ env: { DATABASE_URL: db.url, ...env } });
    open.push(s);
    return s;
  }

  async function events(): Promise<EventRow[]> {
    return (await client.query<EventRow>('SELECT id::int AS id, type, session_id, payload FROM outbox ORDER BY id')).rows;
  }

  it('warns once and then expires each idle session once, with three instances sweeping', async () => {
    const env = { SWEEP_INTERVAL_MS: '50', TIMEOUT_WARNING_SECONDS: '1' };
    const sweepers = [await instance(env), await instance(env), await instance(env)];
    const [first] = sweepers as [Sessions];
    const ids = (
      await Promise.all(Array.from({ length: 24 }, (_, i) => first.create({ title: `idle ${i}`, idleTimeoutSeconds: 2 })))
    ).map((s) => s.id);
    const kept = await first.create({ title: 'no idle timeout', idleTimeoutSeconds: null });

    await waitFor(
      async () => (await client.query(`SELECT count(*)::int AS n FROM sessions WHERE status = 'expired'`)).rows[0].n === ids.length,
      'every idle session to be expired',
    );

    const all = await events();
    for (const id of ids) {
      const mine = all.filter((e) => e.session_id === id);
      const warnings = mine.filter((e) => e.type === 'session.timeout_warning');
      const expired = mine.filter((e) => e.type === 'session.expired');
      expect(warnings, `warnings of ${id}`).toHaveLength(1);
      expect(expired, `expiries of ${id}`).toHaveLength(1);
      expect(warnings[0]?.id).toBeLessThan(expired[0]?.id ?? 0);
      expect(expired[0]?.payload).toMatchObject({ reason: 'idle_timeout' });
      const changed = mine.filter((e) => e.type === 'session.status_changed');
      expect(changed.map((e) => e.payload)).toEqual([expect.objectContaining({ to: 'expired' })]);
      // Another instance may have expired it: `first` drops its cached copy when that
      // instance's notification arrives (milliseconds, not strictly before this read).
      const session = await waitFor(async () => {
        const s = await first.get(id);
        return s.version === 2 ? s : null;
      }, `the expiry of ${id} to reach the first instance's cache`);
      expect(session).toMatchObject({ status: 'expired', endReason: 'idle_timeout', version: 2 });
    }
    expect(all.filter((e) => e.session_id === kept.id).map((e) => e.type)).toEqual(['session.created']);
    expect((await first.get(kept.id)).status).toBe('idle');

    // A pass counts what it expired once its task returns, just after the commit seen above.
    const expiredBy = () => sweepers.map((s) => s.sweeper.stats().expire_sessions?.affected ?? 0).reduce((a, b) => a + b, 0);
    await waitFor(() => expiredBy() >= ids.length, 'the sweepers to count their expiries');
    expect(expiredBy()).toBe(ids.length);
    const stats = await first.stats();
    expect(stats.sessions.byStatus).toMatchObject({ expired: ids.length, idle: 1 });
    expect(stats.sweeps.expire_sessions?.passes).toBeGreaterThan(0);
  });

  it('re-arms the warning after activity and ends sessions at their absolute lifetime', async () => {
    const s = await instance({ SWEEP_INTERVAL_MS: '0', TIMEOUT_WARNING_SECONDS: '3600', ABSOLUTE_TIMEOUT_SECONDS: '2' });
    const session = await s.create({ title: 'short life', idleTimeoutSeconds: 3_000 });
    await s.sweeper.runOnce();
    await s.touch(session.id);
    await s.sweeper.runOnce();
    await s.sweeper.runOnce();
    let mine = (await events()).filter((e) => e.session_id === session.id);
    expect(mine.filter((e) => e.type === 'session.timeout_warning')).toHaveLength(2);
    expect(mine.at(-1)?.payload).toMatchObject({ reason: 'lifetime' });

    await waitFor(async () => (await s.sweeper.runOnce()).expire_sessions === 1, 'the lifetime to end');
    mine = (await events()).filter((e) => e.session_id === session.id);
    expect(mine.map((e) => e.type).slice(-2)).toEqual(['session.status_changed', 'session.expired']);
    expect(mine.at(-1)?.payload).toMatchObject({ reason: 'lifetime' });
  });

  it('purges ended sessions with their items after the retention and prunes published events', async () => {
    const s = await instance({ SWEEP_INTERVAL_MS: '0', RETENTION_DAYS: '30', OUTBOX_RETENTION_HOURS: '1' });
    const old = await s.create({ title: 'old' });
    await s.items.append(old.id, [{ role: 'user', content: 'hi' }]);
    await s.terminate(old.id, 'done');
    const recent = await s.create({ title: 'recent' });
    await s.terminate(recent.id, 'done');
    const live = await s.create({ title: 'live' });
    await client.query(`UPDATE sessions SET ended_at = now() - interval '31 days' WHERE id = $1`, [old.id]);
    // No NATS here: rows older than the retention are pruned unpublished; newer ones stay.
    await client.query(`UPDATE outbox SET created_at = now() - interval '2 hours' WHERE session_id = $1`, [live.id]);
    await client.query(`UPDATE outbox SET published_at = now() - interval '2 hours' WHERE session_id = $1`, [recent.id]);

    const done = await s.sweeper.runOnce();
    expect(done).toMatchObject({ purge_ended_sessions: 1 });
    expect(await s.find(old.id)).toBeNull();
    expect((await client.query('SELECT count(*)::int AS n FROM session_items WHERE session_id = $1', [old.id])).rows[0].n).toBe(0);
    expect((await s.get(recent.id)).status).toBe('terminated');
    const left = await events();
    expect(left.filter((e) => e.session_id === recent.id || e.session_id === live.id)).toEqual([]);
    expect(left.filter((e) => e.session_id === old.id).at(-1)).toMatchObject({ type: 'session.deleted', payload: { reason: 'retention' } });
  });

  it('does not leave the pre-expiry snapshot in the in-process cache (embedded)', async () => {
    const s = await createSessions({ env: { DATA_DIR: ':memory:', SWEEP_INTERVAL_MS: '0', TIMEOUT_WARNING_SECONDS: '0' } });
    try {
      const session = await s.create({ idleTimeoutSeconds: 1 });
      expect((await s.get(session.id)).version).toBe(1);
      await waitFor(async () => (await s.sweeper.runOnce()).expire_sessions === 1, 'the sweep to expire it');
      expect(await s.get(session.id)).toMatchObject({ status: 'expired', version: 2, endReason: 'idle_timeout' });
      expect(internals(s).cacheStats().memory?.size).toBe(1);
    } finally {
      await s.close();
    }
  });
});
