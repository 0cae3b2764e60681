/**
 * The HTTP client against a real server over a real socket (the Fastify app listening on a
 * free port), embedded and on PostgreSQL + Redis: the session lifecycle, If-Match conflicts
 * as typed errors, list iteration across pages, items, runs streamed and resumed (by
 * lastEventId, and by itself after a dropped connection), the event feed, admin keys and
 * errors for what does not exist.
 */
import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentSessionsClient, AgentSessionsHttpError, type FetchFunction } from '../../src/client/index.js';
import type { EventJson, OutputEventJson } from '../../src/client/types.js';
import { demoRunner } from '../../src/runners/demo.js';
import { buildApp } from '../../src/server/app.js';
import { createSessions, type Sessions } from '../../src/internal.js';
import { freshDatabase, requireServices, serviceUrl, uniqueKeyPrefix, type FreshDatabase, type ServiceName } from '../setup/harness.js';

const ADMIN = `client-e2e-admin-${randomUUID()}`;

interface Setup {
  name: string;
  services: readonly ServiceName[];
  env(db: FreshDatabase | null): Record<string, string>;
}

const SETUPS: Setup[] = [
  { name: 'embedded', services: [], env: () => ({ DATA_DIR: ':memory:' }) },
  {
    name: 'postgres+redis',
    services: ['postgres', 'redis'],
    env: (db) => ({ DATABASE_URL: db?.url ?? '', REDIS_URL: serviceUrl('redis'), KEY_PREFIX: uniqueKeyPrefix() }),
  },
];

/** Rejects with the client's error, for asserting on its fields. */
async function httpError(promise: Promise<unknown>): Promise<AgentSessionsHttpError> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof AgentSessionsHttpError) return err;
    throw err;
  }
  throw new Error('expected the call to fail');
}

async function collect<T>(iterable: AsyncIterable<T>, max = Infinity): Promise<T[]> {
  const out: T[] = [];
  for await (const item of iterable) {
    out.push(item);
    if (out.length >= max) break;
  }
  return out;
}

function expectContiguous(events: OutputEventJson[]): void {
  const seqs = events.map((e) => e.seq);
  expect(seqs).toEqual(seqs.map((_, i) => (seqs[0] ?? 0) + i));
}

/**
 * A fetch whose first stream response is cut after `frames` SSE frames, as a dropped
 * connection would be; everything else goes through untouched.
 */
function fetchCuttingFirstStream(frames: number): { fetch: FetchFunction; cuts: () => number; streamRequests: () => number } {
  let cuts = 0;
  let streams = 0;
  const wrapped: FetchFunction = async (input, init) => {
    const res = await fetch(input, init);
    const isStream = (res.headers.get('content-type') ?? '').startsWith('text/event-stream');
    if (!isStream || !res.body) return res;
    streams++;
    if (cuts > 0) return res;
    cuts++;
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    const encoder = new TextEncoder();
    let seen = 0;
    // Passes whole frames up to the `frames`-th, then fails like a reset connection, however
    // the server's writes were split into chunks.
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        const { value, done } = await reader.read();
        if (done) return controller.close();
        const text = decoder.decode(value, { stream: true });
        let cut = -1;
        for (let at = text.indexOf('\n\n'); at >= 0; at = text.indexOf('\n\n', at + 2)) {
          if (++seen >= frames) {
            cut = at + 2;
            break;
          }
        }
        if (cut < 0) return controller.enqueue(encoder.encode(text));
        controller.enqueue(encoder.encode(text.slice(0, cut)));
        await reader.cancel();
        controller.error(new TypeError('terminated: connection reset'));
      },
    });
    return new Response(body, { status: res.status, headers: res.headers });
  };
  return { fetch: wrapped, cuts: () => cuts, streamRequests: () => streams };
}

for (const setup of SETUPS) {
  const suite = `client/e2e/${setup.name}`;
  const ready = requireServices(setup.services, suite);

  describe.skipIf(!ready)(suite, () => {
    let db: FreshDatabase | null = null;
    let sessions: Sessions;
    let app: FastifyInstance;
    let baseUrl: string;
    let client: AgentSessionsClient;

    beforeAll(async () => {
      if (setup.services.includes('postgres')) db = await freshDatabase();
      sessions = await createSessions({
        env: { ...setup.env(db), ADMIN_API_KEY: ADMIN, RUN_SWEEP_INTERVAL_MS: '0', SSE_HEARTBEAT_MS: '200', LOG_LEVEL: 'silent' },
        agent: demoRunner({ wordDelayMs: 5 }),
      });
      app = await buildApp({ sessions });
      baseUrl = await app.listen({ port: 0, host: '127.0.0.1' });
      client = new AgentSessionsClient({ baseUrl, apiKey: ADMIN, timeoutMs: 20_000 });
    });

    afterAll(async () => {
      await app?.close();
      await sessions?.close();
      await db?.drop();
    });

    it('health and readiness', async () => {
      expect(await client.health()).toEqual({ status: 'ok' });
      const report = await client.ready();
      expect(report.status).toBe('ready');
      expect(report.mode).toBe(setup.name === 'embedded' ? 'embedded' : 'distributed');
      expect(report.dependencies.every((d) => d.ok)).toBe(true);
    });

    it('runs a session through its whole lifecycle', async () => {
      const created = await client.create({ user_id: 'alice', model: 'm1', metadata: { plan: 'pro', n: 1 } });
      expect(created).toMatchObject({ version: 1, revision: 1, status: 'idle', user_id: 'alice', metadata: { plan: 'pro', n: 1 } });
      expect(await client.get(created.id)).toEqual(created);

      const updated = await client.update(created.id, { title: 'Trip', metadata: { plan: null, tier: 2 } }, { expectedRevision: 1 });
      expect(updated).toMatchObject({ version: 2, revision: 2, title: 'Trip', metadata: { n: 1, tier: 2 } });
      expect(updated.metadata).not.toHaveProperty('plan');

      const touched = await client.touch(created.id);
      expect(touched).toMatchObject({ version: 3, revision: 2 });
      const counted = await client.incrementCounters(created.id, { total_turns: 1, input_tokens: 812, total_cost_usd: 0.5 });
      expect(counted).toMatchObject({ version: 4, revision: 2, total_turns: 1, input_tokens: 812, total_cost_usd: 0.5 });

      const appended = await client.items.append(created.id, [
        { role: 'user', content: 'Find me a flight' },
        { role: 'assistant', content: 'Where to?' },
        { role: 'user', content: 'Lisbon' },
      ]);
      expect(appended.items.map((i) => i.seq)).toEqual([1, 2, 3]);
      expect(appended.session_version).toBe(5);
      // Touching, counting and appending left the revision alone: the ETag read before them still holds.
      expect(await client.update(created.id, { model: 'm2' }, { expectedRevision: updated.revision })).toMatchObject({ version: 6, revision: 3 });
      const lastTurn = await client.items.list(created.id, { last_turns: 1 });
      expect(lastTurn.items.map((i) => i.content)).toEqual(['Lisbon']);
      const firstPage = await client.items.list(created.id, { limit: 2 });
      expect(firstPage.items).toHaveLength(2);
      expect(firstPage.next_cursor).not.toBeNull();
      expect((await collect(client.items.iterate(created.id, { limit: 2 }))).map((i) => i.content)).toEqual([
        'Find me a flight',
        'Where to?',
        'Lisbon',
      ]);
      // Newest first, and the latest N in chronological order by reversing that page.
      expect((await collect(client.items.iterate(created.id, { limit: 2, order: 'desc' }))).map((i) => i.seq)).toEqual([3, 2, 1]);
      expect((await client.items.list(created.id, { order: 'desc', limit: 2 })).items.reverse().map((i) => i.content)).toEqual([
        'Where to?',
        'Lisbon',
      ]);
      const popped = await client.items.pop(created.id);
      expect(popped.item?.content).toBe('Lisbon');
      // By client_id, without a role: a retry answers the stored item.
      const call = { client_id: 'fc_1', type: 'function_call', content: { name: 'search' } };
      const stored = await client.items.append(created.id, [call]);
      const retried = await client.items.append(created.id, [call]);
      expect(retried.items).toEqual(stored.items);
      expect(retried.items[0]).toMatchObject({ client_id: 'fc_1', role: null, type: 'function_call' });
      expect(retried.session_version).toBe(stored.session_version);
      await client.items.pop(created.id);

      const fork = await client.fork(created.id, { title: 'fork' });
      expect(fork).toMatchObject({ parent_session_id: created.id, title: 'fork', version: 1 });
      expect((await client.items.list(fork.id)).items.map((i) => i.content)).toEqual(['Find me a flight', 'Where to?']);
      const cleared = await client.items.clear(created.id);
      expect(cleared.removed).toBe(2);

      const missing = randomUUID();
      const batch = await client.getMany([created.id, fork.id, missing]);
      expect(batch.sessions.map((s) => s.id).sort()).toEqual([created.id, fork.id].sort());
      expect(batch.not_found).toEqual([missing]);

      const ended = await client.terminate(created.id, { reason: 'user_left' });
      expect(ended).toMatchObject({ status: 'terminated', end_reason: 'user_left' });
      expect((await httpError(client.update(created.id, { title: 'late' }))).code).toBe('session_ended');

      const deleted = await client.deleteMany([fork.id, missing], { purge: true });
      expect(deleted).toEqual({ deleted: [fork.id], not_found: [missing] });
      await client.purge(created.id);
      const gone = await httpError(client.get(created.id));
      expect(gone).toMatchObject({ status: 404, code: 'session_not_found' });

      const stats = await client.stats();
      expect(stats.tenant).toBe('default');
      expect(stats.sessions.total).toBeGreaterThanOrEqual(0);
    });

    it('turns an If-Match conflict into a 409 error with its code', async () => {
      const s = await client.create({});
      await client.update(s.id, { title: 'first' }, { expectedRevision: 1 });
      const conflict = await httpError(client.update(s.id, { title: 'second' }, { expectedRevision: 1 }));
      expect(conflict).toBeInstanceOf(AgentSessionsHttpError);
      expect(conflict).toMatchObject({ status: 409, code: 'version_conflict', title: 'Conflict', retryAfter: undefined });
      expect(conflict.details).toMatchObject({ currentRevision: 2 });
      expect(conflict.retryable).toBe(false);
      // A raw ETag works as well; the losing write changed nothing.
      const current = await client.get(s.id);
      expect(current).toMatchObject({ version: 2, revision: 2, title: 'first' });
      expect((await client.update(s.id, { title: 'third' }, { ifMatch: `"${current.revision}"` })).revision).toBe(3);
      expect((await httpError(client.incrementCounters(s.id, { total_turns: 1 }, { ifMatch: '"1"' }))).code).toBe('version_conflict');
      // Bad input is a 400 with its code, not a conflict.
      expect(await httpError(client.update(s.id, { status: 'bogus' as 'idle' }))).toMatchObject({ status: 400, code: 'validation_failed' });
    });

    it('reports 404 for a missing session on every kind of call', async () => {
      const missing = randomUUID();
      for (const call of [
        () => client.get(missing),
        () => client.update(missing, { title: 'x' }),
        () => client.items.list(missing),
        () => client.runs.start(missing, 'hi'),
      ]) {
        expect(await httpError(call())).toMatchObject({ status: 404, code: 'session_not_found' });
      }
      // A stream of a missing session fails at once instead of reconnecting.
      expect(await httpError(collect(client.runs.stream(missing)))).toMatchObject({ status: 404, code: 'session_not_found' });
      expect(await httpError(client.runs.get(missing, randomUUID()))).toMatchObject({ status: 404 });
    });

    it('iterates a filtered list across pages, newest first, with no duplicate', async () => {
      const user = `pager-${randomUUID()}`;
      const ids: string[] = [];
      for (let i = 0; i < 7; i++) ids.push((await client.create({ user_id: user, title: `s${i}` })).id);
      const first = await client.list({ user_id: user, limit: 3 });
      expect(first.sessions).toHaveLength(3);
      expect(first.next_cursor).toEqual(expect.any(String));
      const all = await collect(client.iterate({ user_id: user, limit: 3 }));
      expect(all.map((s) => s.id)).toEqual([...ids].reverse());
      // Breaking out of the iteration stops fetching pages.
      expect(await collect(client.iterate({ user_id: user, limit: 2 }), 3)).toHaveLength(3);
      expect(await collect(client.iterate({ user_id: `nobody-${randomUUID()}` }))).toEqual([]);
    });

    it('starts a run and streams it; a second reader resumes after lastEventId with no gap and no duplicate', async () => {
      const s = await client.create({});
      const run = await client.runs.start(s.id, { text: 'hello there', words: 40 });
      expect(run).toMatchObject({ session_id: s.id, status: 'running' });

      const head = await collect(client.runs.stream(s.id), 10);
      expect(head).toHaveLength(10);
      expect(head[0]).toMatchObject({ type: 'status', run_id: run.id });
      const tail = await collect(client.runs.stream(s.id, { lastEventId: head.at(-1)?.seq }));
      const all = [...head, ...tail];
      expectContiguous(all);
      expect(all.filter((e) => e.type === 'text')).toHaveLength(40);
      expect(all.at(-1)).toMatchObject({ type: 'done', run_id: run.id, data: { status: 'completed' } });

      expect(await client.runs.get(s.id, run.id)).toMatchObject({ id: run.id, status: 'completed' });
      const page = await client.runs.list(s.id);
      expect(page.runs.map((r) => r.id)).toEqual([run.id]);
      // A reader that comes after the end gets the replay and the terminal event.
      const replay = await collect(client.runs.stream(s.id, { lastEventId: 0 }));
      expect(replay.map((e) => e.seq)).toEqual(all.map((e) => e.seq));
    });

    it('resumes by itself when the connection drops mid-stream', async () => {
      const cutting = fetchCuttingFirstStream(6);
      const flaky = new AgentSessionsClient({ baseUrl, apiKey: ADMIN, fetch: cutting.fetch });
      const s = await flaky.create({});
      const run = await flaky.runs.start(s.id, { words: 30 });
      const events = await collect(flaky.runs.stream(s.id));
      expect(cutting.cuts()).toBe(1);
      expect(cutting.streamRequests()).toBeGreaterThanOrEqual(2);
      expectContiguous(events);
      expect(events.filter((e) => e.type === 'text')).toHaveLength(30);
      expect(events.at(-1)).toMatchObject({ type: 'done', run_id: run.id });
    });

    it('interrupts a run and sends it input', async () => {
      const s = await client.create({});
      const run = await client.runs.start(s.id, { words: 10_000, delay_ms: 20 });
      let sent = false;
      let interrupted: Promise<unknown> | null = null;
      const seen: OutputEventJson[] = [];
      for await (const e of client.runs.stream(s.id)) {
        seen.push(e);
        if (e.type === 'text' && !sent) {
          sent = true;
          expect(await client.runs.sendInput(s.id, 'more please', { runId: run.id })).toMatchObject({ run_id: run.id });
        }
        if (e.type === 'status' && (e.data as { state?: string }).state === 'input_received' && !interrupted) {
          interrupted = client.runs.interrupt(s.id);
        }
      }
      expect(await interrupted).toMatchObject({ id: run.id });
      expect(seen.at(-1)).toMatchObject({ type: 'done', data: { status: 'interrupted' } });
      expect((await client.runs.get(s.id, run.id)).status).toBe('interrupted');
      expect(await httpError(client.runs.interrupt(s.id))).toMatchObject({ status: 409, code: 'no_active_run' });
    });

    it('iterates the event feed, filtered by session and type, and stops on abort', async () => {
      const s = await client.create({ title: 'evented' });
      await client.update(s.id, { title: 'changed' });
      await client.items.append(s.id, [{ role: 'user', content: 'hi' }]);
      const events: EventJson[] = await collect(client.events({ after: 0, sessionId: s.id }), 3);
      expect(events.map((e) => e.type)).toEqual(['session.created', 'session.updated', 'item.added']);
      expect(events.every((e) => e.session_id === s.id && e.tenant_id === 'default')).toBe(true);
      const ids = events.map((e) => e.id);
      expect([...ids].sort((a, b) => a - b)).toEqual(ids);

      // Resuming after an event id, with a type filter.
      const [added] = await collect(client.events({ after: events[0]?.id, sessionId: s.id, types: ['item.added'] }), 1);
      expect(added).toMatchObject({ type: 'item.added', id: events[2]?.id });

      // An event committed while the feed is open arrives; abort ends the iteration with its reason.
      const controller = new AbortController();
      const got: EventJson[] = [];
      const live = (async () => {
        const feed = client.events({ after: events[2]?.id, sessionId: s.id, types: ['session.terminated'], signal: controller.signal });
        for await (const e of feed) {
          got.push(e);
          controller.abort(new Error('done reading'));
        }
      })();
      const ended = expect(live).rejects.toThrow('done reading');
      await client.terminate(s.id, { reason: 'feed' });
      await ended;
      expect(got.map((e) => e.type)).toEqual(['session.terminated']);
      expect(got[0]?.data).toMatchObject({ reason: 'feed' });
    });

    it('manages API keys; a read key cannot write; a revoked key is refused', async () => {
      const created = await client.keys.create({ tenant: 'default', scopes: ['read'], name: 'client-e2e' });
      expect(created.key).toMatch(/^ask_/);
      const listed = await client.keys.list({ tenant: 'default' });
      expect(listed.keys.map((k) => k.id)).toContain(created.id);
      expect(JSON.stringify(listed)).not.toContain(created.key);

      const reader = new AgentSessionsClient({ baseUrl, apiKey: created.key });
      expect((await reader.list({ limit: 1 })).sessions.length).toBeLessThanOrEqual(1);
      expect(await httpError(reader.create({}))).toMatchObject({ status: 403, code: 'forbidden' });
      expect((await client.keys.revoke(created.id)).revoked_at).not.toBeNull();
      expect(await httpError(reader.list())).toMatchObject({ status: 401, code: 'unauthorized' });
      const anonymous = new AgentSessionsClient({ baseUrl });
      expect(await httpError(anonymous.stats())).toMatchObject({ status: 401, code: 'unauthorized' });
    });
  });
}
