/**
 * NATS goes away during a workload and comes back: the service keeps acknowledging writes,
 * the events wait in the outbox, and all of them reach the stream after the restart, each
 * once. Uses a nats-server of its own (never the shared one).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSessions, type Sessions, internals } from '../../src/internal.js';
import { freshDatabase, requireBinaries, requireServices, uniqueNatsNames, type FreshDatabase } from '../setup/harness.js';
import { mixedWorkload, natsServerBinary, OwnNatsServer, outboxRows, perSessionOrderViolation, readStream, unpublishedCount, waitFor } from './support.js';

const ready =
  requireServices(['postgres'], 'events/relay-nats-restart') &&
  requireBinaries(['nats-server'], 'events/relay-nats-restart', natsServerBinary);

describe.skipIf(!ready)('events/relay-nats-restart', () => {
  let db: FreshDatabase;
  let nats: OwnNatsServer;
  let sessions: Sessions;
  const names = uniqueNatsNames();

  beforeAll(async () => {
    db = await freshDatabase('as_events');
    nats = await OwnNatsServer.start();
    sessions = await createSessions({
      env: {
        DATABASE_URL: db.url,
        NATS_URL: nats.url,
        NATS_STREAM: names.stream,
        NATS_SUBJECT_PREFIX: names.subjectPrefix,
        SWEEP_INTERVAL_MS: '0',
        OUTBOX_POLL_MS: '200',
        OUTBOX_MAX_BACKOFF_MS: '1000',
      },
    });
  });

  afterAll(async () => {
    await sessions?.close();
    await nats?.dispose();
    await db?.drop();
  });

  it('loses no event while NATS is down and keeps acknowledging writes', async () => {
    await mixedWorkload(() => sessions, 5);
    await waitFor(async () => (await unpublishedCount(db.url)) === 0, 'the first events to be published');
    const before = (await outboxRows(db.url)).length;

    await nats.stop();
    // Every write of this workload resolves, i.e. PostgreSQL committed it, with NATS gone.
    const created = await mixedWorkload(() => sessions, 8);
    expect(created).toHaveLength(8);
    const waiting = await unpublishedCount(db.url);
    expect(waiting).toBe((await outboxRows(db.url)).length - before);
    expect(waiting).toBeGreaterThan(0);
    const stats = await sessions.stats();
    expect(stats.outbox.backlog).toBe(waiting);
    expect(stats.outbox.oldestUnpublishedAgeSeconds).not.toBeNull();
    await waitFor(() => (internals(sessions).relay?.stats().consecutiveFailures ?? 0) > 0, 'the relay to notice NATS is down');
    expect((await sessions.health()).dependencies.find((d) => d.name === 'nats')?.ok).toBe(false);

    await nats.start();
    await waitFor(async () => (await unpublishedCount(db.url)) === 0, 'the relay to publish the backlog after the restart', 30_000);

    const rows = await outboxRows(db.url);
    const messages = await readStream(nats.url, names.stream);
    expect(messages.map((m) => m.event.id).sort((a, b) => a - b)).toEqual(rows.map((r) => r.id));
    expect(perSessionOrderViolation(messages.map((m) => m.event))).toBeNull();
    expect((await sessions.health()).dependencies.find((d) => d.name === 'nats')?.ok).toBe(true);
  });
});
