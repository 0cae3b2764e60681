/**
 * Per-session order between relays when one relay's publish fails (issue 16), held step by
 * step on real connections:
 *
 *   1. relay X claims session S's earliest event (and holds S);
 *   2. relay Y's claim starts, passes that event (S is held) and goes on through other rows;
 *   3. X's publish fails and X commits without marking, which frees S;
 *   4. Y's claim then reaches S's later event, with S free.
 *
 * Y must not publish S's later event before the earlier one. To hold Y between 2 and 4 without
 * relying on timing, Y's connection resolves `hashtext` to a wrapper (its search_path puts a
 * schema before pg_catalog) that, for the session of the row after S's earliest event, waits
 * for a lock a fourth connection holds: once Y waits there it is past S's earliest event, and
 * it goes on when the test lets it. (This relies on the claim calling `hashtext` unqualified;
 * if it did not, Y would never wait and the test would say so.)
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PgDatabase, PgliteDatabase, type SqlDatabase } from '../../src/adapters/postgres/database.js';
import { migrate } from '../../src/adapters/postgres/migrator.js';
import { PostgresOutbox } from '../../src/adapters/postgres/outbox.js';
import type { EventEnvelope } from '../../src/core/ports.js';
import { freshDatabase, requireServices, uniqueToken, type FreshDatabase } from '../setup/harness.js';
import { waitFor } from './support.js';

/** The advisory lock the gate connection holds (any key the code under test never uses). */
const GATE_KEY = 7_364_019_245;

/** Writes `count` events of `session` (null: no session) in one statement; resolves to their ids. */
async function emit(db: Pick<SqlDatabase, 'query'>, session: string | null, count = 1): Promise<number[]> {
  await db.query(
    `INSERT INTO outbox (tenant_id, type, session_id, payload)
     SELECT 'acme', 'item.added', $1::text, jsonb_build_object('n', i) FROM generate_series(1, $2::int) i ORDER BY i`,
    [session, count],
  );
  const rows = await db.query<{ id: number }>('SELECT id::int AS id FROM outbox ORDER BY id DESC LIMIT $1', [count]);
  return rows.map((r) => Number(r.id)).reverse();
}

describe('events/relay-order on PGlite', () => {
  it('relays every event once, in id order, events without a session included', async () => {
    const lite = new PgliteDatabase();
    try {
      await migrate(lite);
      const [s1, s2] = [randomUUID(), randomUUID()];
      const written = [...(await emit(lite, s1, 3)), ...(await emit(lite, null, 2)), ...(await emit(lite, s2, 2)), ...(await emit(lite, s1))];
      const outbox = new PostgresOutbox(lite);
      const batches: number[][] = [];
      const relayAll = async () => {
        for (;;) {
          const { claimed } = await outbox.relay(3, async (events) => {
            batches.push(events.map((e) => e.id));
            return events.map((e) => e.id);
          });
          if (claimed === 0) return;
        }
      };
      await relayAll();
      expect(batches.flat()).toEqual(written);
      expect(batches.every((ids) => ids.length <= 3)).toBe(true);
    } finally {
      await lite.close();
    }
  });
});

const ready = requireServices(['postgres'], 'events/relay-order');

describe.skipIf(!ready)('events/relay-order', () => {
  let db: FreshDatabase;
  let admin: pg.Client;
  let writer: PgDatabase;
  const open: Array<{ close(): Promise<unknown> }> = [];

  beforeAll(async () => {
    db = await freshDatabase('as_events');
    writer = new PgDatabase({ connectionString: db.url, max: 1 });
    open.push(writer);
    await migrate(writer);
    admin = new pg.Client({ connectionString: db.url });
    await admin.connect();
    await admin.query(`CREATE SCHEMA relay_gate`);
    await admin.query(
      `CREATE FUNCTION relay_gate.hashtext(t text) RETURNS integer LANGUAGE plpgsql AS $$
       BEGIN
         IF t = current_setting('relay_gate.session', true) THEN
           PERFORM pg_catalog.pg_advisory_lock_shared(${GATE_KEY});
           PERFORM pg_catalog.pg_advisory_unlock_shared(${GATE_KEY});
         END IF;
         RETURN pg_catalog.hashtext(t);
       END $$`,
    );
  });

  afterAll(async () => {
    await Promise.all(open.splice(0).map((c) => c.close()));
    await admin?.end();
    await db?.drop();
  });

  /** A relay on a connection of its own, named so the test can find it in pg_stat_activity. */
  function relay(name: string, gateSession?: string): { outbox: PostgresOutbox; app: string } {
    const app = `relay-${name}-${uniqueToken()}`;
    const url = new URL(db.url);
    if (gateSession) url.searchParams.set('options', `-c search_path=relay_gate,pg_catalog,public -c relay_gate.session=${gateSession}`);
    const database = new PgDatabase({ connectionString: url.toString(), max: 1, applicationName: app });
    open.push(database);
    return { outbox: new PostgresOutbox(database), app };
  }

  /**
   * The interleaving, with X's publish failing or succeeding at step 3. Resolves to the ids of
   * S's events that Y was handed to publish, and S's two events.
   */
  async function interleave(xPublishes: boolean) {
    await admin.query('TRUNCATE outbox');
    const s = randomUUID();
    const gate = randomUUID();
    const [a] = await emit(writer, s);
    const [g] = await emit(writer, gate);
    const [n] = await emit(writer, null);
    const [b] = await emit(writer, s);
    expect([a, g, n, b]).toEqual([...[a, g, n, b]].sort((i, j) => i! - j!));

    const gatekeeper = new pg.Client({ connectionString: db.url });
    await gatekeeper.connect();
    await gatekeeper.query('SELECT pg_advisory_lock($1::bigint)', [GATE_KEY]);

    // 1. X claims S's earliest event and holds S until its publish ends.
    const x = relay('x');
    let endPublish!: () => void;
    const publishEnds = new Promise<void>((resolve) => (endPublish = resolve));
    let xClaimed: readonly EventEnvelope[] = [];
    let xHasClaimed!: () => void;
    const xClaim = new Promise<void>((resolve) => (xHasClaimed = resolve));
    const xDone = x.outbox.relay(1, async (events) => {
      xClaimed = events;
      xHasClaimed();
      await publishEnds;
      return xPublishes ? events.map((e) => e.id) : [];
    });
    let yEvents: readonly EventEnvelope[] = [];
    try {
      await xClaim;
      expect(xClaimed.map((e) => e.id)).toEqual([a]);

      // 2. Y's claim passes S's earliest event and waits at the next row (the gate).
      // The claim locks a session by its key (tenant/id): emit writes tenant 'acme'.
      const y = relay('y', `acme/${gate}`);
      const yDone = y.outbox.relay(1_000, async (events) => {
        yEvents = events;
        return events.map((e) => e.id);
      });
      const atGate = async () =>
        (
          await admin.query(
            `SELECT 1 FROM pg_locks l JOIN pg_stat_activity act USING (pid)
             WHERE act.application_name = $1 AND act.query LIKE '-- outbox-claim:%'
               AND l.locktype = 'advisory' AND l.objsubid = 1 AND NOT l.granted
               AND ((l.classid::bigint << 32) | l.objid::bigint) = $2::bigint`,
            [y.app, GATE_KEY],
          )
        ).rowCount === 1;
      await waitFor(atGate, "Y's claim to wait at the gate, past S's earliest event", 20_000, 5);

      // 3. X's publish ends; X commits (marking its event or not), which frees S.
      endPublish();
      await expect(xDone).resolves.toEqual({ claimed: 1, published: xPublishes ? 1 : 0 });
      expect(await atGate()).toBe(true);

      // 4. Y's claim goes on and reaches S's later event with S free.
      await gatekeeper.query('SELECT pg_advisory_unlock($1::bigint)', [GATE_KEY]);
      await yDone;
    } finally {
      // A failed step must not leave X's transaction or Y's statement waiting forever.
      endPublish();
      await gatekeeper.end();
    }
    const ids = yEvents.map((e) => e.id);
    expect(ids).toEqual([...ids].sort((i, j) => i - j));
    expect(ids).toEqual(expect.arrayContaining([g, n]));
    return { sEvents: yEvents.filter((e) => e.sessionId === s).map((e) => e.id), a: a!, b: b! };
  }

  it("publishes a session's later event only after the earlier one a failed relay left behind", async () => {
    const { sEvents, a, b } = await interleave(false);
    expect(sEvents).toEqual([a, b]);
  });

  it('does not publish again what the relay that held the session marked meanwhile', async () => {
    const { sEvents, b } = await interleave(true);
    expect(sEvents).toEqual([b]);
  });
});
