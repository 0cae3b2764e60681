/**
 * Migration 052 (session ids per tenant) on a database the previous version populated: the
 * schema at 051 with rows as that version writes them (UUID ids, every table that names a
 * session, published and unpublished outbox rows, a repair record, the trusted Redis server)
 * and Redis keys under the old names. After the migration every row is kept with its tenant,
 * every foreign key names (tenant_id, session_id), the new version reads and writes it all,
 * the old Redis keys are gone before Redis is used, and the old ids live next to new string
 * ids that two tenants share.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient } from 'redis';
import { PgDatabase } from '../../src/adapters/postgres/database.js';
import { loadMigrations, migrate } from '../../src/adapters/postgres/migrator.js';
import { createSessions } from '../../src/index.js';
import { freshDatabase, requireServices, serviceUrl, uniqueKeyPrefix, type FreshDatabase } from '../setup/harness.js';

const ready = requireServices(['postgres', 'redis'], 'adapters/upgrade-session-ids');

const TENANTS = ['acme', 'globex'];
const PER_TENANT = 40;

interface Seeded {
  sessions: Array<{ id: string; tenant: string }>;
  running: { session: string; tenant: string; run: string };
  counts: Record<string, number>;
}

/** Rows as the previous version wrote them, at schema 051. */
async function seedPreviousVersion(db: PgDatabase): Promise<Seeded> {
  const sessions: Array<{ id: string; tenant: string }> = [];
  for (const tenant of TENANTS) for (let i = 0; i < PER_TENANT; i++) sessions.push({ id: randomUUID(), tenant });
  const [first, second] = sessions;
  if (!first || !second) throw new Error('no sessions');
  await db.query(
    `INSERT INTO sessions (id, tenant_id, status, title, parent_session_id, item_seq, output_seq)
     SELECT (x->>'id')::uuid, x->>'tenant', 'idle', 'old ' || (x->>'id'), NULL, 3, 2 FROM jsonb_array_elements($1::jsonb) x`,
    [JSON.stringify(sessions)],
  );
  await db.query(`UPDATE sessions SET parent_session_id = $1::uuid WHERE id = $2::uuid`, [first.id, sessions[1]?.id]);
  await db.query(
    `INSERT INTO session_items (session_id, seq, id, role, type, content)
     SELECT s.id, g, gen_random_uuid(), CASE WHEN g = 1 THEN 'user' ELSE 'assistant' END, 'message', to_jsonb('item ' || g)
     FROM sessions s, generate_series(1, 3) g`,
  );
  const doneRun = randomUUID();
  const runningRun = randomUUID();
  await db.query(
    `INSERT INTO runs (id, session_id, tenant_id, status, input, end_reason, start_seq, end_seq, created_at, ended_at)
     VALUES ($1::uuid, $2::uuid, $3, 'completed', '"hi"', 'completed', 1, 2, now() - interval '1 minute', now())`,
    [doneRun, first.id, first.tenant],
  );
  await db.query(
    `INSERT INTO run_output (session_id, seq, run_id, type, data) VALUES
       ($1::uuid, 1, $2::uuid, 'text', '{"text": "hello"}'), ($1::uuid, 2, $2::uuid, 'done', '{}')`,
    [first.id, doneRun],
  );
  // A run the old instance was running when it stopped: its lease lapsed.
  await db.query(
    `INSERT INTO runs (id, session_id, tenant_id, status, owner, lease_expires_at, input, start_seq, started_at)
     VALUES ($1::uuid, $2::uuid, $3, 'running', 'old-instance', now() - interval '1 minute', 'null', 3, now())`,
    [runningRun, second.id, second.tenant],
  );
  await db.query(`UPDATE sessions SET status = 'active', running_run_id = $1::uuid, output_seq = 3 WHERE id = $2::uuid`, [
    runningRun,
    second.id,
  ]);
  await db.query(`INSERT INTO run_output (session_id, seq, run_id, type, data) VALUES ($1::uuid, 3, $2::uuid, 'status', '{"status": "running"}')`, [
    second.id,
    runningRun,
  ]);
  await db.query(`INSERT INTO run_inputs (run_id, seq, data) VALUES ($1::uuid, 1, '"more"')`, [runningRun]);
  await db.query(`UPDATE runs SET input_seq = 1 WHERE id = $1::uuid`, [runningRun]);
  await db.query(`INSERT INTO session_locks (session_id, token, expires_at) VALUES ($1::uuid, 'old-token', now() + interval '1 hour')`, [
    first.id,
  ]);
  await db.query(
    `INSERT INTO outbox (tenant_id, type, session_id, payload, published_at)
     SELECT s.tenant_id, 'session.created', s.id, jsonb_build_object('n', 1), now() FROM sessions s`,
  );
  await db.query(
    `INSERT INTO outbox (tenant_id, type, session_id, payload) VALUES ($1, 'session.updated', $2::uuid, '{"n": 2}')`,
    [first.tenant, first.id],
  );
  await db.query(`INSERT INTO cache_repairs (session_id, version) VALUES ($1::uuid, 7)`, [first.id]);
  const counts: Record<string, number> = {};
  for (const table of ['sessions', 'session_items', 'runs', 'run_output', 'run_inputs', 'outbox', 'session_locks', 'cache_repairs']) {
    const [row] = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`);
    counts[table] = row?.n ?? 0;
  }
  return { sessions, running: { session: second.id, tenant: second.tenant, run: runningRun }, counts };
}

describe.skipIf(!ready)('adapters/upgrade-session-ids (migration 052 on a populated database)', () => {
  let fresh: FreshDatabase;
  let db: PgDatabase;
  let seeded: Seeded;
  let migratedMs = 0;
  const keyPrefix = uniqueKeyPrefix();
  const redis = createClient({ url: serviceUrl('redis') });

  beforeAll(async () => {
    fresh = await freshDatabase();
    db = new PgDatabase({ connectionString: fresh.url });
    await db.ready();
    await migrate(db, loadMigrations().filter((m) => m.version <= 51));
    seeded = await seedPreviousVersion(db);
    await redis.connect();
    // What the previous version left in Redis: a cache entry, a live output stream, a lease.
    const [first] = seeded.sessions;
    if (!first) throw new Error('no session');
    await redis.set(`${keyPrefix}s:{${first.id}}`, JSON.stringify({ id: first.id, version: 1 }));
    await redis.xAdd(`${keyPrefix}s:{${first.id}}:out`, '1-0', { e: '{}' });
    await redis.set(`${keyPrefix}s:{${first.id}}:lock`, 'old-token');
    await db.query(`INSERT INTO cache_redis_servers (key_prefix, identity) VALUES ($1, 'the-server-as-it-was')`, [keyPrefix]);
    const started = performance.now();
    await migrate(db);
    migratedMs = performance.now() - started;
  }, 120_000);

  afterAll(async () => {
    await db?.close();
    if (redis.isOpen) {
      for await (const keys of redis.scanIterator({ MATCH: `${keyPrefix}*`, COUNT: 1_000 })) if (keys.length > 0) await redis.unlink(keys);
      await redis.quit();
    }
    await fresh?.drop();
  });

  it('keeps every row and gives each child row its session’s tenant', async () => {
    for (const [table, n] of Object.entries(seeded.counts)) {
      const [row] = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`);
      expect(row?.n, table).toBe(n);
    }
    for (const table of ['session_items', 'runs', 'run_output', 'session_locks', 'cache_repairs']) {
      const [row] = await db.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM ${table} c LEFT JOIN sessions s ON s.tenant_id = c.tenant_id AND s.id = c.session_id WHERE s.id IS NULL`,
      );
      expect(row?.n, `${table} rows without their session`).toBe(0);
    }
    console.info(`migration 052 on ${seeded.counts.sessions} sessions, ${seeded.counts.session_items} items: ${migratedMs.toFixed(0)} ms`);
  });

  it('names the session by (tenant_id, id) in the primary key and every foreign key', async () => {
    const rows = await db.query<{ table: string; kind: string; columns: string[] }>(
      `SELECT c.conrelid::regclass::text AS table, c.contype::text AS kind,
         array_agg(a.attname::text ORDER BY k.ord) AS columns
       FROM pg_constraint c
       CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)
       JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
       WHERE (c.contype = 'f' AND c.confrelid = 'sessions'::regclass) OR (c.contype = 'p' AND c.conrelid IN ('sessions'::regclass, 'run_output'::regclass))
       GROUP BY c.oid, c.conrelid, c.contype`,
    );
    const byTable = Object.fromEntries(rows.map((r) => [`${r.table}:${r.kind}`, r.columns]));
    expect(byTable).toEqual({
      'sessions:p': ['tenant_id', 'id'],
      'session_items:f': ['tenant_id', 'session_id'],
      'runs:f': ['tenant_id', 'session_id'],
      // No foreign key since migration 063 (a trigger on sessions removes the output); the
      // primary key names the session the same way.
      'run_output:p': ['tenant_id', 'session_id', 'seq'],
      'session_locks:f': ['tenant_id', 'session_id'],
    });
  });

  it('serves the old data from the new version, clears the old Redis names, and takes string ids two tenants share', async () => {
    const sessions = await createSessions({
      env: { DATABASE_URL: fresh.url, REDIS_URL: serviceUrl('redis'), KEY_PREFIX: keyPrefix, INSTANCE_ID: 'upgraded' },
    });
    try {
      // The first instance to connect cleared the keys written under the old names.
      const left: string[] = [];
      for await (const keys of redis.scanIterator({ MATCH: `${keyPrefix}s:*`, COUNT: 1_000 })) left.push(...keys);
      expect(left.filter((k) => seeded.sessions.some((s) => k.includes(s.id)))).toEqual([]);

      const [first] = seeded.sessions;
      if (!first) throw new Error('no session');
      const old = await sessions.get(first.id, { tenant: first.tenant });
      expect(old.title).toBe(`old ${first.id}`);
      expect(await sessions.find(first.id, { tenant: TENANTS.find((t) => t !== first.tenant) })).toBeNull();
      const items = await sessions.items.list(first.id, {}, { tenant: first.tenant });
      expect(items.items.map((i) => i.content)).toEqual(['item 1', 'item 2', 'item 3']);
      const appended = await sessions.items.append(first.id, [{ role: 'user', content: 'after the upgrade' }], { tenant: first.tenant });
      expect(appended.items[0]?.seq).toBe(4);
      const replay: unknown[] = [];
      for await (const e of sessions.runs.stream(first.id, { tenant: first.tenant, after: 0 })) replay.push(e.type);
      expect(replay).toEqual(['text', 'done']);
      const forked = await sessions.fork(first.id, { id: 'forked-after-upgrade' }, { tenant: first.tenant });
      expect(forked.parentSessionId).toBe(first.id);

      // The run the old instance left running is ended by the orphan sweep, its session repaired.
      const { running } = seeded;
      let ended = false;
      for (const deadline = Date.now() + 20_000; !ended && Date.now() < deadline; ) {
        const run = await sessions.runs.get(running.session, running.run, { tenant: running.tenant });
        ended = run.status === 'failed';
        if (!ended) await new Promise((r) => setTimeout(r, 100));
      }
      expect(ended).toBe(true);
      expect((await sessions.get(running.session, { tenant: running.tenant })).status).toBe('idle');

      // New string ids, the same in both tenants.
      for (const tenant of TENANTS) {
        const made = await sessions.create({ id: 'conv_shared', title: tenant }, { tenant });
        expect(made.id).toBe('conv_shared');
      }
      expect((await sessions.get('conv_shared', { tenant: 'acme' })).title).toBe('acme');
      expect((await sessions.get('conv_shared', { tenant: 'globex' })).title).toBe('globex');
    } finally {
      await sessions.close();
    }
  }, 60_000);
});
