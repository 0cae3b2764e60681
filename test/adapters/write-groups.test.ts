/**
 * Grouped creates and increments on PostgreSQL (session-create-many.sql,
 * session-increment-counters-many.sql): calls made at once share statements, and each caller
 * still gets exactly the outcome it would get alone (its own conflict, its own refusal), with
 * counts and events exact. A call inside a caller's transaction is never grouped.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentSessionsError } from '../../src/core/errors.js';
import type { SessionLifetimes } from '../../src/core/ports.js';
import { ambientDatabase, type AmbientDatabase } from '../../src/adapters/postgres/ambient-transaction.js';
import { PgDatabase } from '../../src/adapters/postgres/database.js';
import { migrate } from '../../src/adapters/postgres/migrator.js';
import { PostgresSessionRepository } from '../../src/adapters/postgres/session-repository.js';
import { freshDatabase, requireServices, within, type FreshDatabase } from '../setup/harness.js';

const ready = requireServices(['postgres'], 'adapters/write-groups');

const TENANT = 'groups';
const FOREVER: SessionLifetimes = { ttlSeconds: null, idleTimeoutSeconds: null, absoluteTimeoutSeconds: null };

async function codeOf(work: Promise<unknown>): Promise<string> {
  try {
    await work;
    return 'ok';
  } catch (err) {
    if (err instanceof AgentSessionsError) return err.code;
    throw err;
  }
}

describe.skipIf(!ready)('adapters/write-groups', () => {
  let fresh: FreshDatabase;
  let pgdb: PgDatabase;
  let db: AmbientDatabase;
  let repo: PostgresSessionRepository;

  beforeAll(async () => {
    fresh = await freshDatabase();
    pgdb = new PgDatabase({ connectionString: fresh.url, max: 12 });
    await migrate(pgdb);
    db = ambientDatabase(pgdb);
    repo = new PostgresSessionRepository(db);
  });

  afterAll(async () => {
    await pgdb?.close();
    await fresh?.drop();
  });

  async function createdEvents(ids: readonly string[]): Promise<number> {
    const [row] = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM outbox WHERE type = 'session.created' AND session_id = ANY($1::text[])`,
      [ids],
    );
    return Number(row?.n);
  }

  it('creates made at once share statements; a taken id and a missing parent fail only their own create', async () => {
    const taken = (await repo.create(TENANT, randomUUID(), { title: 'first' }, FOREVER)).id;
    const before = repo.writeGroupStats().creates;
    const ids = Array.from({ length: 40 }, () => randomUUID());
    const outcomes = await Promise.all([
      ...ids.map((id, i) => codeOf(repo.create(TENANT, id, { title: `t${i}`, metadata: { i }, mcpClientIds: [`m${i}`] }, FOREVER))),
      codeOf(repo.create(TENANT, taken, { title: 'again' }, FOREVER)),
      codeOf(repo.create(TENANT, randomUUID(), { parentSessionId: randomUUID() }, FOREVER)),
    ]);
    expect(outcomes).toEqual([...ids.map(() => 'ok'), 'session_exists', 'session_not_found']);
    const after = repo.writeGroupStats().creates;
    expect(after.calls - before.calls).toBe(42);
    expect(after.groups - before.groups).toBeLessThan(42);

    const stored = await repo.getMany(TENANT, ids);
    expect(stored).toHaveLength(40);
    const byId = new Map(stored.map((s) => [s.id, s]));
    ids.forEach((id, i) => {
      expect(byId.get(id)).toMatchObject({ title: `t${i}`, metadata: { i }, mcpClientIds: [`m${i}`], version: 1, totalTurns: 0 });
    });
    expect(await createdEvents(ids)).toBe(40);
    expect((await repo.get(TENANT, taken))?.title).toBe('first');
  });

  it('the same id created twice at once: one create wins, the other is told it exists', async () => {
    const id = randomUUID();
    const outcomes = await Promise.all([
      codeOf(repo.create(TENANT, id, { title: 'a' }, FOREVER)),
      codeOf(repo.create(TENANT, id, { title: 'b' }, FOREVER)),
      ...Array.from({ length: 6 }, () => codeOf(repo.create(TENANT, randomUUID(), {}, FOREVER))),
    ]);
    expect(outcomes.slice(0, 2).sort()).toEqual(['ok', 'session_exists']);
    expect(outcomes.slice(2)).toEqual(Array(6).fill('ok'));
    expect(await createdEvents([id])).toBe(1);
  });

  it('a parent and its child created at once are both created, whichever group each lands in', async () => {
    const pairs = Array.from({ length: 6 }, () => ({ parent: randomUUID(), child: randomUUID() }));
    const outcomes = await Promise.all(
      pairs.flatMap(({ parent, child }) => [
        codeOf(repo.create(TENANT, parent, {}, FOREVER)),
        codeOf(repo.create(TENANT, child, { parentSessionId: parent }, FOREVER)),
      ]),
    );
    expect(outcomes).toEqual(Array(12).fill('ok'));
    for (const { parent, child } of pairs) expect((await repo.get(TENANT, child))?.parentSessionId).toBe(parent);
  });

  it('stores the input as it was when create was called, though the group goes later', async () => {
    const metadata: Record<string, unknown> = { step: 1 };
    const mcpClientIds = ['a'];
    const ids = Array.from({ length: 8 }, () => randomUUID());
    const created = Promise.all(ids.map((id) => repo.create(TENANT, id, { metadata, mcpClientIds }, FOREVER)));
    metadata.step = 2;
    mcpClientIds.push('b');
    for (const s of await created) expect(s).toMatchObject({ metadata: { step: 1 }, mcpClientIds: ['a'] });
    for (const s of await repo.getMany(TENANT, ids)) expect(s).toMatchObject({ metadata: { step: 1 }, mcpClientIds: ['a'] });
  });

  it('a value the database refuses fails its own create; the others of its group are created', async () => {
    const ids = Array.from({ length: 8 }, () => randomUUID());
    const before = repo.writeGroupStats().creates;
    const outcomes = await Promise.all(
      ids.map((id, i) =>
        // 2^31 seconds does not fit the ttl column (integer).
        codeOf(repo.create(TENANT, id, {}, i === 3 ? { ...FOREVER, ttlSeconds: 2 ** 31 } : FOREVER)),
      ),
    );
    expect(outcomes).toEqual(ids.map((_, i) => (i === 3 ? 'validation_failed' : 'ok')));
    // They went as a group (whose statement failed), then each alone.
    expect(repo.writeGroupStats().creates.groups - before.groups).toBeLessThan(8);
    expect((await repo.getMany(TENANT, ids)).map((s) => s.id).sort()).toEqual(ids.filter((_, i) => i !== 3).sort());
  });

  it('increments made at once share statements and count exactly', async () => {
    const sessions = await Promise.all(Array.from({ length: 12 }, () => repo.create(TENANT, randomUUID(), {}, FOREVER)));
    const before = repo.writeGroupStats().increments;
    const rounds = 15;
    await Promise.all(
      sessions.flatMap((s) =>
        Array.from({ length: rounds }, () => repo.incrementCounters(TENANT, s.id, { totalTurns: 1, inputTokens: 3, totalCostUsd: 0.25 }, {})),
      ),
    );
    const after = repo.writeGroupStats().increments;
    expect(after.calls - before.calls).toBe(12 * rounds);
    expect(after.groups - before.groups).toBeLessThan(12 * rounds);
    for (const s of await repo.getMany(TENANT, sessions.map((x) => x.id))) {
      expect(s).toMatchObject({ totalTurns: rounds, inputTokens: 3 * rounds, totalCostUsd: 0.25 * rounds, version: 1 + rounds });
    }
    const [row] = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM outbox WHERE type = 'session.updated' AND session_id = ANY($1::text[])`,
      [sessions.map((x) => x.id)],
    );
    expect(Number(row?.n)).toBe(0);
  });

  it('a stale fencing token or an old revision refuses only its own increment', async () => {
    const [fenced, revised, plain] = await Promise.all([0, 1, 2].map(() => repo.create(TENANT, randomUUID(), {}, FOREVER)));
    await repo.incrementCounters(TENANT, fenced!.id, { totalTurns: 1 }, { fencingToken: 10 });
    const outcomes = await Promise.all([
      codeOf(repo.incrementCounters(TENANT, fenced!.id, { totalTurns: 1 }, { fencingToken: 9 })),
      codeOf(repo.incrementCounters(TENANT, revised!.id, { totalTurns: 1 }, { expectedRevision: revised!.revision + 5 })),
      codeOf(repo.incrementCounters(TENANT, plain!.id, { totalTurns: 1 }, { fencingToken: 3 })),
    ]);
    expect(outcomes).toEqual(['stale_fencing_token', 'version_conflict', 'ok']);
    expect((await repo.get(TENANT, fenced!.id))?.totalTurns).toBe(1);
    expect((await repo.get(TENANT, revised!.id))?.totalTurns).toBe(0);
    expect((await repo.get(TENANT, plain!.id))?.totalTurns).toBe(1);
  });

  it('an increment of a session another transaction holds waits for it, without holding up the rest of its group', async () => {
    const [busy, ...free] = await Promise.all(Array.from({ length: 6 }, () => repo.create(TENANT, randomUUID(), {}, FOREVER)));
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let locked!: () => void;
    const isLocked = new Promise<void>((r) => (locked = r));
    const holder = pgdb.transaction(async (tx) => {
      await tx.query('SELECT 1 FROM sessions WHERE tenant_id = $1 AND id = $2 FOR UPDATE', [TENANT, busy!.id]);
      locked();
      await released;
    });
    await isLocked;
    let busyDone = false;
    const busyIncrement = repo.incrementCounters(TENANT, busy!.id, { totalTurns: 1 }, {}).then((s) => {
      busyDone = true;
      return s;
    });
    const rest = await Promise.all(free.map((s) => repo.incrementCounters(TENANT, s.id, { totalTurns: 1 }, {})));
    expect(rest.map((s) => s.totalTurns)).toEqual(free.map(() => 1));
    expect(busyDone).toBe(false);
    release();
    await holder;
    expect((await busyIncrement).totalTurns).toBe(1);
    await within(5_000, async () => (await repo.get(TENANT, busy!.id))?.totalTurns === 1);
  });

  it('a create or an increment inside a caller’s transaction joins it: rolled back, it never happened', async () => {
    const existing = await repo.create(TENANT, randomUUID(), {}, FOREVER);
    const id = randomUUID();
    const before = repo.writeGroupStats();
    await expect(
      db.withinTransaction(async () => {
        await Promise.all([
          repo.create(TENANT, id, {}, FOREVER),
          repo.incrementCounters(TENANT, existing.id, { totalTurns: 5 }, {}),
        ]);
        throw new Error('roll back');
      }),
    ).rejects.toThrow('roll back');
    expect(repo.writeGroupStats()).toEqual(before);
    expect(await repo.get(TENANT, id)).toBeNull();
    expect((await repo.get(TENANT, existing.id))?.totalTurns).toBe(0);
  });
});
