/**
 * Per-session order across relays while NATS goes away and comes back, again and again, under
 * a steady workload (issue 16): three instances share one database, each with its relay;
 * around every restart some relays are connected while others still fail to publish, which is
 * when a failed relay freeing a session mid-claim used to let another relay publish that
 * session's later events first. Afterwards the stream must hold every event once, and every
 * session's events in increasing id order. Uses a nats-server of its own.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSessions, type Sessions, internals } from '../../src/internal.js';
import { freshDatabase, requireBinaries, requireServices, uniqueNatsNames, type FreshDatabase } from '../setup/harness.js';
import { natsServerBinary, OwnNatsServer, outboxRows, readStream, unpublishedCount, waitFor, type StreamMessage } from './support.js';

/**
 * Sessions written concurrently, each through the three instances in turn. Few enough that a
 * failing relay's batch holds every one of them, so the other relays' claims walk the whole
 * backlog at that moment: the window in which the race showed.
 */
const SESSIONS = 10;
/** NATS stop/start cycles during the workload. */
const CYCLES = 6;
/** Events to wait for the workload to write while NATS is up, and while it is down. */
const EVENTS_UP = 200;
const EVENTS_DOWN = 600;

const ready =
  requireServices(['postgres'], 'events/relay-order-nats-restart') &&
  requireBinaries(['nats-server'], 'events/relay-order-nats-restart', natsServerBinary);

/** Every place where a session's event follows a later one of the same session in the stream. */
function orderViolations(messages: readonly StreamMessage[]): string[] {
  const last = new Map<string, number>();
  const out: string[] = [];
  for (const m of messages) {
    const { id, session_id: session } = m.event;
    if (session === null) continue;
    const prev = last.get(session);
    if (prev !== undefined && prev > id) out.push(`session ${session}: event ${id} stored after ${prev}`);
    last.set(session, Math.max(prev ?? 0, id));
  }
  return out;
}

describe.skipIf(!ready)('events/relay-order-nats-restart', () => {
  let db: FreshDatabase;
  let nats: OwnNatsServer;
  const instances: Sessions[] = [];
  const names = uniqueNatsNames();

  beforeAll(async () => {
    db = await freshDatabase('as_events');
    nats = await OwnNatsServer.start();
    for (let i = 0; i < 3; i++) {
      instances.push(
        await createSessions({
          env: {
            DATABASE_URL: db.url,
            NATS_URL: nats.url,
            NATS_STREAM: names.stream,
            NATS_SUBJECT_PREFIX: names.subjectPrefix,
            SWEEP_INTERVAL_MS: '0',
            OUTBOX_POLL_MS: '100',
            // Failing relays retry often, so around a restart they claim (and fail) while
            // the relays that already reconnected are publishing.
            OUTBOX_MAX_BACKOFF_MS: '100',
          },
        }),
      );
    }
  });

  afterAll(async () => {
    await Promise.all(instances.map((s) => s.close()));
    await nats?.dispose();
    await db?.drop();
  });

  it('stores every event once and each session in outbox order through NATS restarts', async () => {
    const pick = (i: number) => instances[i % instances.length] as Sessions;
    let emitted = 0;
    let stopping = false;
    const workload = Promise.all(
      Array.from({ length: SESSIONS }, async (_, i) => {
        const s = await pick(i).create({ title: `s${i}` });
        emitted++;
        for (let k = 1; !stopping; k++) {
          if (k % 3 === 0) {
            await pick(i + k).items.append(s.id, [{ role: 'user', content: `m${k}` }]);
            emitted++;
          } else {
            // Two events in one commit: session.updated and session.status_changed.
            await pick(i + k).update(s.id, { status: k % 3 === 1 ? 'waiting_input' : 'idle', metadata: { k } });
            emitted += 2;
          }
        }
      }),
    );
    // A write that fails ends the wait at once.
    const broken = workload.then(() => {
      throw new Error('the workload stopped early');
    });
    broken.catch(() => undefined);
    const events = async (n: number, what: string) => {
      const from = emitted;
      await Promise.race([waitFor(() => emitted >= from + n, what, 30_000), broken]);
    };

    for (let cycle = 0; cycle < CYCLES; cycle++) {
      await events(EVENTS_UP, `events written while NATS is up (cycle ${cycle})`);
      await nats.stop();
      await events(EVENTS_DOWN, `events written while NATS is down (cycle ${cycle})`);
      await nats.start();
    }
    await events(EVENTS_UP, 'events written after the last restart');
    stopping = true;
    await workload;
    await waitFor(async () => (await unpublishedCount(db.url)) === 0, 'the relays to publish the backlog', 30_000);

    const failures = instances.map((s) => internals(s).relay?.stats().failures ?? 0);
    expect(failures.some((f) => f > 0), 'relays failed to publish while NATS was down').toBe(true);

    const rows = await outboxRows(db.url);
    const messages = await readStream(nats.url, names.stream);
    const ids = messages.map((m) => m.event.id);
    // JetStream dropped every republished copy by its Nats-Msg-Id: the stream holds each event once.
    expect(messages.every((m) => m.msgId === String(m.event.id))).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort((a, b) => a - b)).toEqual(rows.map((r) => r.id));
    expect(orderViolations(messages)).toEqual([]);
  });
});
