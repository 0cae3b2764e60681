/**
 * The event feed without NATS: the library iterator and GET /v1/events over a real socket.
 * Gap-free even when a lower event id commits after higher ones; resumable with
 * Last-Event-ID; filtered; tenant-scoped; leaving the loop unsubscribes.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSessions, type Sessions, internals } from '../../src/internal.js';
import { buildApp } from '../../src/server/app.js';
import { PostgresOutbox } from '../../src/adapters/postgres/outbox.js';
import type { EventEnvelope } from '../../src/core/ports.js';
import { freshDatabase, requireServices, type FreshDatabase } from '../setup/harness.js';
import { waitFor } from './support.js';

/** Collects a subscription in the background. */
function collect(iterable: AsyncIterable<EventEnvelope>): { events: EventEnvelope[]; done: Promise<unknown> } {
  const events: EventEnvelope[] = [];
  const done = (async () => {
    for await (const e of iterable) events.push(e);
  })().catch((err: unknown) => err);
  return { events, done };
}

interface Frame {
  id: string | undefined;
  event: string | undefined;
  data: Record<string, unknown>;
}

/** A minimal SSE client over a real socket. */
function sse(url: string, headers: Record<string, string>) {
  const frames: Frame[] = [];
  const comments: string[] = [];
  let status = 0;
  let buffer = '';
  const req = http.get(url, { headers: { accept: 'text/event-stream', ...headers } });
  const ended = new Promise<void>((resolve) => {
    req.on('response', (res) => {
      status = res.statusCode ?? 0;
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buffer += chunk;
        let i: number;
        while ((i = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, i);
          buffer = buffer.slice(i + 2);
          const f: Partial<Frame> & { dataText?: string } = {};
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) comments.push(line.slice(1).trim());
            else if (line.startsWith('id: ')) f.id = line.slice(4);
            else if (line.startsWith('event: ')) f.event = line.slice(7);
            else if (line.startsWith('data: ')) f.dataText = line.slice(6);
          }
          if (f.dataText !== undefined) frames.push({ id: f.id, event: f.event, data: JSON.parse(f.dataText) as Record<string, unknown> });
        }
      });
      res.on('close', () => resolve());
    });
    req.on('error', () => resolve());
  });
  return {
    frames,
    comments,
    status: () => status,
    ended,
    close: () => req.destroy(),
  };
}

const ready = requireServices(['postgres'], 'events/feed');

describe.skipIf(!ready)('events/feed', () => {
  let db: FreshDatabase;
  let sessions: Sessions;
  let client: pg.Client;

  beforeAll(async () => {
    db = await freshDatabase('as_events');
    sessions = await createSessions({ env: { DATABASE_URL: db.url, SWEEP_INTERVAL_MS: '0', SSE_HEARTBEAT_MS: '100' } });
    client = new pg.Client({ connectionString: db.url });
    await client.connect();
  });

  afterAll(async () => {
    await client?.end();
    await sessions?.close();
    await db?.drop();
  });

  async function tenantEventIds(tenant: string): Promise<number[]> {
    const r = await client.query<{ id: number }>('SELECT id::int AS id FROM outbox WHERE tenant_id = $1 ORDER BY id', [tenant]);
    return r.rows.map((x) => x.id);
  }

  it('holds back events committed above a lower id still in flight, then delivers all in order', async () => {
    const tenant = 'gap';
    const controller = new AbortController();
    const sub = collect(sessions.events.subscribe({ tenant, after: 0, signal: controller.signal }));
    const a = await sessions.create({ title: 'a' }, { tenant });
    await waitFor(() => sub.events.some((e) => e.sessionId === a.id), 'the first event');

    // A transaction draws an event id and stays open while later ids commit.
    const held = new pg.Client({ connectionString: db.url });
    await held.connect();
    await held.query('BEGIN');
    const [{ id: heldId }] = (
      await held.query<{ id: number }>(
        `INSERT INTO outbox (tenant_id, type, session_id, payload) VALUES ($1, 'session.updated', $2, '{"held": true}') RETURNING id::int AS id`,
        [tenant, a.id],
      )
    ).rows as [{ id: number }];
    const b = await sessions.create({ title: 'b' }, { tenant });
    const c = await sessions.create({ title: 'c' }, { tenant });

    // A reader that trusts "after the last id I saw" would see b and c now and never the held one.
    const naive = await client.query<{ id: number }>('SELECT id::int AS id FROM outbox WHERE tenant_id = $1 AND id > $2', [tenant, heldId]);
    expect(naive.rows.length).toBeGreaterThanOrEqual(2);
    // The horizon stays below the held id while its transaction runs.
    const probe = new PostgresOutbox(internals(sessions).db);
    const h = await waitFor(async () => {
      const x = await probe.horizon();
      return x.latest > heldId ? x : null;
    }, 'the probe to see the later ids');
    expect(h.horizon).toBeLessThan(heldId);
    // Give the feed's pump several samples; it must deliver nothing past the held id meanwhile.
    await new Promise((r) => setTimeout(r, 400));
    expect(sub.events.every((e) => e.id < heldId)).toBe(true);

    await held.query('COMMIT');
    await held.end();
    await waitFor(() => sub.events.some((e) => e.sessionId === c.id), 'the events after the commit');
    controller.abort();
    expect(await sub.done).toMatchObject({ name: 'AbortError' });

    const ids = sub.events.map((e) => e.id);
    expect(ids).toEqual(await tenantEventIds(tenant));
    expect(ids).toContain(heldId);
    expect(sub.events.find((e) => e.id === heldId)?.data).toEqual({ held: true });
    expect(sub.events.filter((e) => e.sessionId === b.id).map((e) => e.type)).toEqual(['session.created']);
  });

  it('tells other instances about commits with a NOTIFY sent after the commit', async () => {
    const listener = new pg.Client({ connectionString: db.url });
    await listener.connect();
    try {
      const heard: string[] = [];
      listener.on('notification', (n) => heard.push(n.channel));
      await listener.query('LISTEN agent_sessions_outbox');
      await sessions.create({ title: 'wake others' }, { tenant: 'notify' });
      await waitFor(() => heard.length > 0, 'the NOTIFY');
      expect(heard[0]).toBe('agent_sessions_outbox');
      // Writers themselves never notify (that would serialize their commits): no trigger.
      const triggers = await client.query(`SELECT tgname FROM pg_trigger WHERE tgrelid = 'outbox'::regclass AND NOT tgisinternal`);
      expect(triggers.rows).toEqual([]);
    } finally {
      await listener.end();
    }
  });

  it('filters by type and session, never shows another tenant, and unsubscribes on break', async () => {
    const s1 = await sessions.create({ title: 'one' }, { tenant: 'filters' });
    const s2 = await sessions.create({ title: 'two' }, { tenant: 'filters' });
    const other = await sessions.create({ title: 'other tenant' }, { tenant: 'intruder' });
    await sessions.update(s1.id, { title: 'one!' }, { tenant: 'filters' });
    await sessions.update(other.id, { title: 'x' }, { tenant: 'intruder' });
    await sessions.terminate(s2.id, 'bye', { tenant: 'filters' });

    const all: EventEnvelope[] = [];
    for await (const e of sessions.events.subscribe({ tenant: 'filters', after: 0 })) {
      all.push(e);
      if (e.sessionId === s2.id && e.type === 'session.terminated') break;
    }
    expect(all.every((e) => e.tenantId === 'filters')).toBe(true);
    expect(all.map((e) => e.id)).toEqual(await tenantEventIds('filters'));

    const typed: EventEnvelope[] = [];
    for await (const e of sessions.events.subscribe({ tenant: 'filters', after: 0, types: ['session.updated'], sessionId: s1.id })) {
      typed.push(e);
      break;
    }
    expect(typed).toEqual([expect.objectContaining({ type: 'session.updated', sessionId: s1.id, tenantId: 'filters' })]);
    expect(typed[0]).toEqual({
      id: expect.any(Number),
      type: 'session.updated',
      tenantId: 'filters',
      sessionId: s1.id,
      occurredAt: expect.any(String),
      data: expect.objectContaining({ version: 2, revision: 2 }),
    });

    expect(() => sessions.events.subscribe({ types: ['session.nope'] })).toThrow(expect.objectContaining({ code: 'validation_failed' }));
    expect(() => sessions.events.subscribe({ sessionId: 'not an id' })).toThrow(expect.objectContaining({ code: 'validation_failed' }));
  });

  describe('GET /v1/events over a real socket', () => {
    let app: FastifyInstance;
    let base: string;
    let key: string;
    let otherKey: string;

    beforeAll(async () => {
      app = await buildApp({ sessions });
      await app.listen({ port: 0, host: '127.0.0.1' });
      base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
      key = (await internals(sessions).apiKeys.create({ tenant: 'sse', scopes: ['read', 'write'] })).key;
      otherKey = (await internals(sessions).apiKeys.create({ tenant: 'sse-other', scopes: ['read', 'write'] })).key;
    });

    afterAll(async () => {
      await app?.close();
    });

    it('resumes with no gap and no duplicate after a reconnect during a workload', async () => {
      const auth = { authorization: `Bearer ${key}` };
      const first = sse(`${base}/v1/events?after=0`, auth);
      const writes = (async () => {
        for (let i = 0; i < 30; i++) {
          const s = await sessions.create({ title: `w${i}` }, { tenant: 'sse' });
          await sessions.update(s.id, { metadata: { i } }, { tenant: 'sse' });
          await sessions.create({ title: `noise ${i}` }, { tenant: 'sse-other' });
        }
      })();
      await waitFor(() => first.frames.length >= 15, 'some events on the first connection');
      first.close();
      await first.ended;
      const seen = first.frames.map((f) => Number(f.id));
      const last = seen.at(-1);

      const second = sse(`${base}/v1/events?after=0`, { ...auth, 'last-event-id': String(last) });
      await writes;
      const expected = await tenantEventIds('sse');
      await waitFor(() => Number(second.frames.at(-1)?.id) === expected.at(-1), 'the rest on the second connection');
      await waitFor(() => second.comments.includes('heartbeat'), 'a heartbeat comment');
      second.close();

      expect(first.status()).toBe(200);
      const ids = [...seen, ...second.frames.map((f) => Number(f.id))];
      expect(ids).toEqual(expected);
      for (const f of [...first.frames, ...second.frames]) {
        expect(f.data).toMatchObject({ id: Number(f.id), type: f.event, tenant_id: 'sse' });
        expect(Object.keys(f.data).sort()).toEqual(['data', 'id', 'occurred_at', 'session_id', 'tenant_id', 'type']);
      }
    });

    it('answers bad input with 400 and needs a key', async () => {
      const get = async (path: string, headers: Record<string, string> = { authorization: `Bearer ${otherKey}` }) => {
        const res = await app.inject({ method: 'GET', url: path, headers });
        return { status: res.statusCode, body: res.json<{ code: string }>() };
      };
      expect(await get('/v1/events?type=session.bogus')).toMatchObject({ status: 400, body: { code: 'validation_failed' } });
      expect(await get('/v1/events?session_id=no%2Fpe')).toMatchObject({ status: 400, body: { code: 'validation_failed' } });
      expect(await get('/v1/events?after=-1')).toMatchObject({ status: 400 });
      expect(await get('/v1/events', { authorization: `Bearer ${otherKey}`, 'last-event-id': 'abc' })).toMatchObject({
        status: 400,
        body: { code: 'validation_failed' },
      });
      expect(await get('/v1/events', {})).toMatchObject({ status: 401, body: { code: 'unauthorized' } });
    });

    it('GET /v1/stats counts the caller’s tenant only', async () => {
      const res = await app.inject({ method: 'GET', url: '/v1/stats', headers: { authorization: `Bearer ${otherKey}` } });
      expect(res.statusCode).toBe(200);
      const body = res.json<Record<string, unknown>>();
      expect(body).toMatchObject({
        tenant: 'sse-other',
        sessions: { by_status: { idle: 30 }, total: 30 },
        runs: { active: 0 },
        outbox: { publisher: null, backlog: null, oldest_unpublished_age_seconds: null, relay: null },
        cache: {},
        sweeps: { expire_sessions: { passes: 0, affected: 0, errors: 0 } },
      });
    });
  });
});

describe('events/feed (embedded)', () => {
  it('serves the outbox of an in-memory PGlite database', async () => {
    const sessions = await createSessions({ env: { DATA_DIR: ':memory:', SWEEP_INTERVAL_MS: '0' } });
    try {
      const controller = new AbortController();
      const sub = collect(sessions.events.subscribe({ signal: controller.signal }));
      const s = await sessions.create({ title: 'embedded' });
      await sessions.items.append(s.id, [{ role: 'user', content: 'hi' }]);
      await waitFor(() => sub.events.length >= 2, 'the embedded events');
      controller.abort();
      await sub.done;
      expect(sub.events.map((e) => e.type)).toEqual(['session.created', 'item.added']);
      await sessions.get(s.id);
      const stats = await sessions.stats();
      expect(stats.cache.memory).toMatchObject({ hits: 1, misses: 0, hitRatio: 1 });
    } finally {
      await sessions.close();
    }
  });
});
