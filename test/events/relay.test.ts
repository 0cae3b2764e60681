/**
 * The outbox relay against real PostgreSQL and the shared NATS (a unique stream per test):
 * everything committed arrives once and in per-session order, nothing rolled back arrives,
 * a crash between publish and mark is absorbed by JetStream's duplicate window, and several
 * relays at once publish each event exactly once.
 */
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createSessions, type Sessions, internals } from '../../src/internal.js';
import { OutboxRelay, publishWaves } from '../../src/core/outbox-relay.js';
import { PostgresOutbox } from '../../src/adapters/postgres/outbox.js';
import { JetStreamEventPublisher, subjectToken } from '../../src/adapters/nats/jetstream-publisher.js';
import type { EventEnvelope, PublishOutcome } from '../../src/core/ports.js';
import { freshDatabase, requireServices, serviceUrl, uniqueNatsNames, type FreshDatabase } from '../setup/harness.js';
import {
  deleteStream,
  mixedWorkload,
  outboxRows,
  perSessionOrderViolation,
  readStream,
  unpublishedCount,
  waitFor,
} from './support.js';

describe('publishWaves', () => {
  const ev = (id: number, sessionId: string | null): EventEnvelope => ({
    id,
    type: 'session.updated',
    tenantId: 't',
    sessionId,
    occurredAt: new Date(0).toISOString(),
    data: null,
  });

  it('puts at most one event of a session in a wave, in id order', () => {
    const waves = publishWaves([ev(1, 'a'), ev(2, 'b'), ev(3, 'a'), ev(4, null), ev(5, 'a'), ev(6, 'b')]);
    expect(waves.map((w) => w.map((e) => e.id))).toEqual([[1, 2, 4], [3, 6], [5]]);
  });
});

const ready = requireServices(['postgres', 'nats'], 'events/relay');

describe.skipIf(!ready)('events/relay', () => {
  let db: FreshDatabase;
  let natsUrl: string;
  const open: Sessions[] = [];
  const streams: string[] = [];

  beforeAll(async () => {
    db = await freshDatabase('as_events');
    natsUrl = serviceUrl('nats');
  });

  afterEach(async () => {
    await Promise.all(open.splice(0).map((s) => s.close()));
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    await client.query('TRUNCATE sessions, outbox CASCADE');
    await client.end();
  });

  afterAll(async () => {
    await Promise.all(streams.map((s) => deleteStream(natsUrl, s)));
    await db?.drop();
  });

  async function instance(names: { stream: string; subjectPrefix: string } | null, env: Record<string, string> = {}): Promise<Sessions> {
    const s = await createSessions({
      env: {
        DATABASE_URL: db.url,
        SWEEP_INTERVAL_MS: '0',
        OUTBOX_POLL_MS: '500',
        ...(names ? { NATS_URL: natsUrl, NATS_STREAM: names.stream, NATS_SUBJECT_PREFIX: names.subjectPrefix } : {}),
        ...env,
      },
    });
    open.push(s);
    return s;
  }

  function names(): { stream: string; subjectPrefix: string } {
    const n = uniqueNatsNames();
    streams.push(n.stream);
    return n;
  }

  it('delivers every committed event once, in per-session order, and nothing from a rollback', async () => {
    const n = names();
    const sessions = await instance(n);
    const ids = await mixedWorkload(() => sessions, 12, 'acme');

    // A write that fails its guard commits nothing and emits nothing.
    await expect(sessions.update(ids[1] ?? '', { title: 'x' }, { tenant: 'acme', expectedRevision: 999 })).rejects.toMatchObject({
      code: 'version_conflict',
    });
    // A transaction that inserted an event and rolled back.
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    await client.query('BEGIN');
    await client.query(
      `INSERT INTO outbox (tenant_id, type, session_id, payload) VALUES ('acme', 'session.updated', $1, '{"rolled_back": true}')`,
      [ids[0]],
    );
    await client.query('ROLLBACK');
    await client.end();
    // Tenants with characters that mean something in a subject stay one token.
    await sessions.create({ title: 'dotted' }, { tenant: 'eu.acme' });

    await waitFor(async () => (await unpublishedCount(db.url)) === 0, 'the relay to drain the outbox');
    const rows = await outboxRows(db.url);
    const messages = await readStream(natsUrl, n.stream);

    // Across sessions the stream may interleave differently from id order; per session it may not.
    expect(messages.map((m) => m.event.id).sort((a, b) => a - b)).toEqual(rows.map((r) => r.id));
    expect(new Set(messages.map((m) => m.event.id)).size).toBe(messages.length);
    expect(perSessionOrderViolation(messages.map((m) => m.event))).toBeNull();
    expect(messages.some((m) => JSON.stringify(m.event.data).includes('rolled_back'))).toBe(false);
    for (const m of messages) {
      expect(m.msgId).toBe(String(m.event.id));
      expect(m.subject).toBe(`${n.subjectPrefix}.${subjectToken(m.event.tenant_id)}.${m.event.type}`);
      expect(Object.keys(m.event).sort()).toEqual(['data', 'id', 'occurred_at', 'session_id', 'tenant_id', 'type']);
    }
    expect(messages.find((m) => m.event.tenant_id === 'eu.acme')?.subject).toBe(`${n.subjectPrefix}.eu%2Eacme.session.created`);
    const types = new Set(messages.map((m) => m.event.type));
    for (const t of ['session.created', 'session.updated', 'session.status_changed', 'session.terminated', 'session.deleted', 'item.added']) {
      expect(types).toContain(t);
    }
    const stats = await sessions.stats({ tenant: 'acme' });
    expect(stats.outbox).toMatchObject({ publisher: 'nats', backlog: 0, oldestUnpublishedAgeSeconds: null });
    expect(stats.outbox.relay?.duplicates).toBe(0);
  });

  it('republishes after a crash between publish and mark; JetStream drops the copies as duplicates', async () => {
    const n = names();
    // No NATS for this instance: its writes only fill the outbox; the test relays by hand.
    const sessions = await instance(null);
    await mixedWorkload(() => sessions, 4);
    const total = (await outboxRows(db.url)).length;

    const outbox = new PostgresOutbox(internals(sessions).db);
    const publisher = new JetStreamEventPublisher({ url: natsUrl, stream: n.stream, subjectPrefix: n.subjectPrefix });
    await publisher.ready();
    try {
      const outcomes: PublishOutcome[] = [];
      const recording = Object.assign(Object.create(publisher) as JetStreamEventPublisher, {
        publish: async (e: EventEnvelope) => {
          const o = await publisher.publish(e);
          outcomes.push(o);
          return o;
        },
      });

      // The "killed" relay: publishes everything, then dies before its mark commits.
      await expect(
        outbox.relay(1_000, async (events) => {
          for (const e of events) await recording.publish(e);
          throw new Error('killed between publish and mark');
        }),
      ).rejects.toThrow('killed');
      expect(outcomes).toHaveLength(total);
      expect(outcomes.every((o) => !o.duplicate)).toBe(true);
      expect(await unpublishedCount(db.url)).toBe(total);

      // The next relay publishes the same rows again and marks them.
      outcomes.length = 0;
      const relay = new OutboxRelay({ store: outbox, publisher: recording, batchSize: 1_000 });
      expect(await relay.relayOnce()).toBe(total);
      expect(outcomes).toHaveLength(total);
      expect(outcomes.every((o) => o.duplicate)).toBe(true);
      expect(relay.stats()).toMatchObject({ published: 0, duplicates: total });
      expect(await unpublishedCount(db.url)).toBe(0);

      const messages = await readStream(natsUrl, n.stream);
      expect(messages.map((m) => m.event.id).sort((a, b) => a - b)).toEqual((await outboxRows(db.url)).map((r) => r.id));
    } finally {
      await publisher.close();
    }
  });

  it('three relays at once publish every event exactly once', async () => {
    const n = names();
    const instances = [await instance(n), await instance(n), await instance(n)];
    const pick = (i: number) => instances[i % 3] as Sessions;
    await mixedWorkload(pick, 30);
    await Promise.all([mixedWorkload(pick, 10, 'beta'), mixedWorkload((i) => pick(i + 1), 10, 'gamma')]);

    await waitFor(async () => (await unpublishedCount(db.url)) === 0, 'the relays to drain the outbox');
    const rows = await outboxRows(db.url);
    const messages = await readStream(natsUrl, n.stream);
    const stats = instances.map((s) => internals(s).relay?.stats());

    expect(messages).toHaveLength(rows.length);
    expect(new Set(messages.map((m) => m.event.id)).size).toBe(rows.length);
    expect(stats.reduce((sum, s) => sum + (s?.published ?? 0), 0)).toBe(rows.length);
    expect(stats.reduce((sum, s) => sum + (s?.duplicates ?? 0), 0)).toBe(0);
    expect(perSessionOrderViolation(messages.map((m) => m.event))).toBeNull();
  });
});
