/**
 * The session and item routes through app.inject(), on every configuration: status codes,
 * problem+json bodies with stable codes, ETag/If-Match, concurrency, and that a rejected
 * request changes nothing in the database.
 */
import { readdirSync } from 'node:fs';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/server/app.js';
import type { Sessions } from '../../src/internal.js';
import { CONFIGURATIONS, type Backend } from '../conformance/configurations.js';
import { requireServices } from '../setup/harness.js';
import { internals } from '../../src/internal.js';

const ADMIN_KEY = 'test-admin-key-0123456789abcdef';
const auth = { authorization: `Bearer ${ADMIN_KEY}` };

/** Row counts and the sum of versions: equal before and after a request that changed nothing. */
async function snapshot(sessions: Sessions): Promise<string> {
  const rows = await internals(sessions).db.query<Record<string, unknown>>(`
    SELECT (SELECT count(*) FROM sessions)::int AS sessions,
           (SELECT coalesce(sum(version), 0) FROM sessions)::bigint::text AS versions,
           (SELECT count(*) FROM session_items)::int AS items,
           (SELECT count(*) FROM outbox)::int AS outbox,
           (SELECT count(*) FROM api_keys)::int AS keys`);
  return JSON.stringify(rows[0]);
}

function expectProblem(res: LightMyRequestResponse, status: number, code: string): void {
  expect(res.statusCode, res.body).toBe(status);
  expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
  const body = res.json() as { code: string; status: number; title: string; type: string };
  expect(body.code).toBe(code);
  expect(body.status).toBe(status);
  expect(body.type).toBe(`urn:agent-sessions:problem:${code}`);
}

for (const configuration of CONFIGURATIONS) {
  const suite = `http/sessions/${configuration.name}`;
  const ready = requireServices(configuration.services, suite);

  describe.skipIf(!ready)(suite, () => {
    let backend: Backend;
    let sessions: Sessions;
    let app: FastifyInstance;

    beforeAll(async () => {
      backend = await configuration.prepare();
      sessions = await backend.open({ ADMIN_API_KEY: ADMIN_KEY, METADATA_LIMIT_BYTES: '1024' });
      app = await buildApp({ sessions });
    });

    afterAll(async () => {
      await app?.close();
      await sessions?.close();
      await backend?.dispose();
    });

    const create = async (body: Record<string, unknown> = {}) => {
      const res = await app.inject({ method: 'POST', url: '/v1/sessions', headers: auth, payload: body });
      expect(res.statusCode, res.body).toBe(201);
      return res.json() as { id: string; version: number; revision: number; [k: string]: unknown };
    };

    it('requires an API key on /v1 and not on /health', async () => {
      expectProblem(await app.inject({ method: 'GET', url: '/v1/sessions' }), 401, 'unauthorized');
      expectProblem(
        await app.inject({ method: 'GET', url: '/v1/sessions', headers: { authorization: 'Bearer nope' } }),
        401,
        'unauthorized',
      );
      const viaHeader = await app.inject({ method: 'GET', url: '/v1/sessions', headers: { 'x-api-key': ADMIN_KEY } });
      expect(viaHeader.statusCode).toBe(200);
      expect((await app.inject({ method: 'GET', url: '/health' })).json()).toEqual({ status: 'ok' });
    });

    it('names the answering instance in X-Instance-Id on every answer, problems and 404s included', async () => {
      const id = sessions.config.instanceId;
      expect((await app.inject({ method: 'GET', url: '/health' })).headers['x-instance-id']).toBe(id);
      expect((await app.inject({ method: 'GET', url: '/v1/sessions' })).headers['x-instance-id']).toBe(id);
      expect((await app.inject({ method: 'GET', url: '/nowhere' })).headers['x-instance-id']).toBe(id);
      expect((await app.inject({ method: 'GET', url: '/v1/sessions', headers: auth })).headers['x-instance-id']).toBe(id);
    });

    it('reports readiness with each dependency', async () => {
      const res = await app.inject({ method: 'GET', url: '/ready' });
      expect(res.statusCode).toBe(200);
      const body = res.json() as { status: string; dependencies: { name: string; ok: boolean; latency_ms: number }[] };
      expect(body.status).toBe('ready');
      expect(body.dependencies[0]).toMatchObject({ ok: true });
      expect(body.dependencies[0]?.latency_ms).toBeGreaterThanOrEqual(0);
    });

    it('creates, reads with ETag, lists, updates with If-Match and terminates', async () => {
      const created = await app.inject({
        method: 'POST',
        url: '/v1/sessions',
        headers: auth,
        payload: { user_id: 'alice', model: 'm1', metadata: { plan: 'pro', keep: 1 }, mcp_client_ids: ['fs'] },
      });
      expect(created.statusCode).toBe(201);
      expect(created.headers.etag).toBe('"1"');
      const s = created.json() as { id: string; version: number; status: string; metadata: object };
      expect(created.headers.location).toBe(`/v1/sessions/${s.id}`);
      expect(s).toMatchObject({ version: 1, status: 'idle', user_id: 'alice', mcp_client_ids: ['fs'] });

      const got = await app.inject({ method: 'GET', url: `/v1/sessions/${s.id}`, headers: auth });
      expect(got.statusCode).toBe(200);
      expect(got.headers.etag).toBe('"1"');
      const notModified = await app.inject({
        method: 'GET',
        url: `/v1/sessions/${s.id}`,
        headers: { ...auth, 'if-none-match': '"1"' },
      });
      expect(notModified.statusCode).toBe(304);

      const patched = await app.inject({
        method: 'PATCH',
        url: `/v1/sessions/${s.id}`,
        headers: { ...auth, 'if-match': '"1"' },
        payload: { title: 'T', metadata: { plan: null, tier: 2 }, status: 'active' },
      });
      expect(patched.statusCode, patched.body).toBe(200);
      expect(patched.headers.etag).toBe('"2"');
      expect(patched.json()).toMatchObject({ title: 'T', metadata: { keep: 1, tier: 2 }, status: 'active', version: 2 });

      const stale = await app.inject({
        method: 'PATCH',
        url: `/v1/sessions/${s.id}`,
        headers: { ...auth, 'if-match': '"1"' },
        payload: { title: 'lost' },
      });
      expectProblem(stale, 409, 'version_conflict');

      const list = await app.inject({ method: 'GET', url: '/v1/sessions?user_id=alice&limit=5', headers: auth });
      expect((list.json() as { sessions: { id: string }[] }).sessions.map((x) => x.id)).toContain(s.id);
      const searched = async (q: string) => {
        const res = await app.inject({ method: 'GET', url: `/v1/sessions?q=${encodeURIComponent(q)}`, headers: auth });
        expect(res.statusCode, res.body).toBe(200);
        return (res.json() as { sessions: { id: string }[] }).sessions.map((x) => x.id);
      };
      // Up to the counter bits and 16 random ones (xxxxxxxx-xxxx-7ccc-vrrr): this session's alone.
      expect(await searched(s.id.slice(0, 23))).toEqual([s.id]);
      // A short prefix (the same ~65 s of creation times) may match others made around it too.
      const short = await searched(s.id.slice(0, 8));
      expect(short).toContain(s.id);
      for (const id of short) expect(id.startsWith(s.id.slice(0, 8))).toBe(true);
      expect(await searched('t')).toContain(s.id);
      expect(await searched('%')).not.toContain(s.id);
      const tooLong = await app.inject({ method: 'GET', url: `/v1/sessions?q=${'x'.repeat(257)}`, headers: auth });
      expectProblem(tooLong, 400, 'validation_failed');

      const terminated = await app.inject({ method: 'DELETE', url: `/v1/sessions/${s.id}?reason=done`, headers: auth });
      expect(terminated.json()).toMatchObject({ status: 'terminated', end_reason: 'done' });
      const afterEnd = await app.inject({ method: 'POST', url: `/v1/sessions/${s.id}/touch`, headers: auth });
      expectProblem(afterEnd, 409, 'session_ended');

      const purged = await app.inject({ method: 'DELETE', url: `/v1/sessions/${s.id}?purge=true`, headers: auth });
      expect(purged.statusCode).toBe(204);
      expectProblem(await app.inject({ method: 'GET', url: `/v1/sessions/${s.id}`, headers: auth }), 404, 'session_not_found');
    });

    it('gets or creates with PUT: 201 once, then 200 with the stored session; concurrent PUTs make one session', async () => {
      const id = `chat_${Date.now().toString(36)}:V1StGXR8-Z5jdHi6B`;
      const first = await app.inject({ method: 'PUT', url: `/v1/sessions/${id}`, headers: auth, payload: { title: 'made by put', user_id: 'u' } });
      expect(first.statusCode).toBe(201);
      expect(first.headers.location).toBe(`/v1/sessions/${id}`);
      expect(first.json()).toMatchObject({ id, title: 'made by put', user_id: 'u', version: 1 });
      const second = await app.inject({ method: 'PUT', url: `/v1/sessions/${id}`, headers: auth, payload: { title: 'not applied' } });
      expect(second.statusCode).toBe(200);
      expect(second.json()).toMatchObject({ id, title: 'made by put', version: 1 });
      expect(second.headers.etag).toBe(first.headers.etag);
      const bare = await app.inject({ method: 'PUT', url: `/v1/sessions/${id}`, headers: auth });
      expect(bare.statusCode, bare.body).toBe(200);

      const raced = `raced-${Date.now().toString(36)}`;
      const answers = await Promise.all(
        Array.from({ length: 20 }, () => app.inject({ method: 'PUT', url: `/v1/sessions/${raced}`, headers: auth, payload: { title: 'r' } })),
      );
      expect(answers.filter((a) => a.statusCode === 201)).toHaveLength(1);
      expect(answers.filter((a) => a.statusCode === 200)).toHaveLength(19);
      const created = await app.inject({ method: 'GET', url: `/v1/sessions?q=${raced}`, headers: auth });
      expect((created.json() as { sessions: unknown[] }).sessions).toHaveLength(1);
    });

    it('makes the revision the ETag: an item append leaves it, a stale If-Match is 409 and changes nothing', async () => {
      const s = await create({ title: 'a' });
      expect(s).toMatchObject({ version: 1, revision: 1 });
      const append = await app.inject({
        method: 'POST',
        url: `/v1/sessions/${s.id}/items`,
        headers: auth,
        payload: { items: [{ role: 'user', content: 'hi' }] },
      });
      expect(append.statusCode, append.body).toBe(201);
      const counted = await app.inject({ method: 'POST', url: `/v1/sessions/${s.id}/counters`, headers: auth, payload: { total_turns: 1 } });
      expect(counted.headers.etag).toBe('"1"');
      const got = await app.inject({ method: 'GET', url: `/v1/sessions/${s.id}`, headers: auth });
      expect(got.headers.etag).toBe('"1"');
      expect(got.json()).toMatchObject({ version: 3, revision: 1, total_turns: 1 });
      // The revision is unchanged but the representation is not (counters): no 304.
      const revalidated = await app.inject({ method: 'GET', url: `/v1/sessions/${s.id}`, headers: { ...auth, 'if-none-match': '"1"' } });
      expect(revalidated.statusCode).toBe(200);
      expect(revalidated.json()).toMatchObject({ total_turns: 1 });

      const patched = await app.inject({
        method: 'PATCH',
        url: `/v1/sessions/${s.id}`,
        headers: { ...auth, 'if-match': got.headers.etag as string },
        payload: { title: 'b', metadata: { k: 1 } },
      });
      expect(patched.statusCode, patched.body).toBe(200);
      expect(patched.headers.etag).toBe('"2"');
      expect(patched.json()).toMatchObject({ version: 4, revision: 2, title: 'b' });

      const stale = await app.inject({
        method: 'PATCH',
        url: `/v1/sessions/${s.id}`,
        headers: { ...auth, 'if-match': '"1"' },
        payload: { title: 'lost', metadata: { k: 2 } },
      });
      expectProblem(stale, 409, 'version_conflict');
      expect(stale.json()).toMatchObject({ details: { currentRevision: 2 } });
      const staleDelete = await app.inject({ method: 'DELETE', url: `/v1/sessions/${s.id}`, headers: { ...auth, 'if-match': '"1"' } });
      expectProblem(staleDelete, 409, 'version_conflict');
      const after = await app.inject({ method: 'GET', url: `/v1/sessions/${s.id}`, headers: auth });
      expect(after.headers.etag).toBe('"2"');
      expect(after.json()).toMatchObject({ version: 4, revision: 2, title: 'b', metadata: { k: 1 }, status: 'idle' });

      const ended = await app.inject({ method: 'DELETE', url: `/v1/sessions/${s.id}`, headers: { ...auth, 'if-match': '"2"' } });
      expect(ended.statusCode, ended.body).toBe(200);
      expect(ended.headers.etag).toBe('"3"');
      expect(ended.json()).toMatchObject({ status: 'terminated', revision: 3 });
    });

    it('returns every metadata key as stored, line breaks included, and a 304 without body headers', async () => {
      const metadata = { 'a\nb': 1, 'x\u2028y': [2], 'c\rd': { e: null }, plain: 'p' };
      const id = (await create({ metadata })).id as string;
      const res = await app.inject({ method: 'GET', url: `/v1/sessions/${id}`, headers: auth });
      expect(res.statusCode).toBe(200);
      expect(res.json().metadata).toEqual(metadata);
      const list = await app.inject({ method: 'POST', url: '/v1/sessions:batch-get', headers: auth, payload: { ids: [id] } });
      expect(list.json().sessions[0].metadata).toEqual(metadata);
      const again = await app.inject({ method: 'GET', url: `/v1/sessions/${id}`, headers: { ...auth, 'if-none-match': res.headers.etag as string } });
      expect(again.statusCode).toBe(304);
      expect(again.body).toBe('');
      expect(again.headers['content-type']).toBeUndefined();
      expect(again.headers['content-length']).toBeUndefined();
    });

    it('lets exactly one of 50 concurrent PATCHes with the same If-Match win', async () => {
      const s = await create();
      const results = await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          app.inject({
            method: 'PATCH',
            url: `/v1/sessions/${s.id}`,
            headers: { ...auth, 'if-match': '"1"' },
            payload: { metadata: { writer: i } },
          }),
        ),
      );
      const codes = results.map((r) => r.statusCode);
      expect(codes.filter((c) => c === 200)).toHaveLength(1);
      expect(codes.filter((c) => c === 409)).toHaveLength(49);
      const final = (await app.inject({ method: 'GET', url: `/v1/sessions/${s.id}`, headers: auth })).json();
      expect(final).toMatchObject({ version: 2 });
    });

    it('counts 1,000 concurrent counter increments exactly', async () => {
      const s = await create();
      const results = await Promise.all(
        Array.from({ length: 1000 }, () =>
          app.inject({
            method: 'POST',
            url: `/v1/sessions/${s.id}/counters`,
            headers: auth,
            payload: { total_turns: 1, total_cost_usd: 0.001 },
          }),
        ),
      );
      expect(results.every((r) => r.statusCode === 200)).toBe(true);
      const final = (await app.inject({ method: 'GET', url: `/v1/sessions/${s.id}`, headers: auth })).json() as {
        total_turns: number;
        total_cost_usd: number;
        version: number;
      };
      expect(final.total_turns).toBe(1000);
      expect(final.total_cost_usd).toBeCloseTo(1, 9);
      expect(final.version).toBe(1001);
    });

    it('serves items: append, list by cursor and last turns, pop, clear', async () => {
      const s = await create();
      const appended = await app.inject({
        method: 'POST',
        url: `/v1/sessions/${s.id}/items`,
        headers: auth,
        payload: {
          items: [
            { role: 'user', content: 'q1' },
            { role: 'assistant', type: 'tool_call', content: { name: 'search' } },
            { role: 'tool', type: 'tool_result', content: { hits: 2 } },
            { role: 'assistant', content: 'a1' },
            { role: 'user', content: 'q2' },
          ],
        },
      });
      expect(appended.statusCode).toBe(201);
      expect((appended.json() as { items: { seq: number }[] }).items.map((i) => i.seq)).toEqual([1, 2, 3, 4, 5]);

      const page1 = (await app.inject({ method: 'GET', url: `/v1/sessions/${s.id}/items?limit=2`, headers: auth })).json() as {
        items: { seq: number }[];
        next_cursor: string;
      };
      expect(page1.items.map((i) => i.seq)).toEqual([1, 2]);
      const page2 = (
        await app.inject({ method: 'GET', url: `/v1/sessions/${s.id}/items?limit=10&cursor=${page1.next_cursor}`, headers: auth })
      ).json() as { items: { seq: number }[]; next_cursor: string | null };
      expect(page2.items.map((i) => i.seq)).toEqual([3, 4, 5]);
      expect(page2.next_cursor).toBeNull();

      const lastTwo = (await app.inject({ method: 'GET', url: `/v1/sessions/${s.id}/items?last_turns=2`, headers: auth })).json() as {
        items: { seq: number }[];
      };
      expect(lastTwo.items.map((i) => i.seq)).toEqual([1, 2, 3, 4, 5]);

      const popped = (await app.inject({ method: 'DELETE', url: `/v1/sessions/${s.id}/items/last`, headers: auth })).json() as {
        item: { seq: number; content: unknown };
      };
      expect(popped.item).toMatchObject({ seq: 5, content: 'q2' });
      const cleared = (await app.inject({ method: 'DELETE', url: `/v1/sessions/${s.id}/items`, headers: auth })).json();
      expect(cleared).toMatchObject({ removed: 4 });
    });

    it('serves items without a role, by client_id (stored once, replaced in place) and newest first', async () => {
      const s = await create();
      const url = `/v1/sessions/${s.id}/items`;
      type ItemJson = { seq: number; id: string; client_id: string | null; role: string | null; type: string; content: unknown };
      const append = async (items: unknown[]) => {
        const res = await app.inject({ method: 'POST', url, headers: auth, payload: { items } });
        expect(res.statusCode, res.body).toBe(201);
        return res.json() as { items: ItemJson[]; session_version: number };
      };
      const call = { type: 'function_call', name: 'search', arguments: '{}', callId: 'c1' };
      const first = await append([
        { client_id: 'u1', role: 'user', content: 'find' },
        { client_id: 'fc1', type: 'function_call', content: call },
        { content: 'plain' },
      ]);
      expect(first.items.map((i) => [i.seq, i.client_id, i.role, i.type])).toEqual([
        [1, 'u1', 'user', 'message'],
        [2, 'fc1', null, 'function_call'],
        [3, null, null, 'message'],
      ]);

      // A retry: the stored items, nothing written.
      const before = await snapshot(sessions);
      const retried = await append([
        { client_id: 'u1', role: 'user', content: 'find' },
        { client_id: 'fc1', type: 'function_call', content: call },
      ]);
      expect(retried.items).toEqual(first.items.slice(0, 2));
      expect(retried.session_version).toBe(first.session_version);
      expect(await snapshot(sessions)).toBe(before);

      // Another body: replaced in place.
      const replaced = await append([{ client_id: 'u1', role: 'user', content: 'find flights' }]);
      expect(replaced.items[0]).toMatchObject({ seq: 1, id: first.items[0]?.id, content: 'find flights' });
      expect(replaced.session_version).toBe(first.session_version + 1);

      const desc = (await app.inject({ method: 'GET', url: `${url}?order=desc&limit=2`, headers: auth })).json() as {
        items: ItemJson[];
        next_cursor: string;
      };
      expect(desc.items.map((i) => i.seq)).toEqual([3, 2]);
      const older = (
        await app.inject({ method: 'GET', url: `${url}?order=desc&limit=2&cursor=${desc.next_cursor}`, headers: auth })
      ).json() as { items: ItemJson[]; next_cursor: string | null };
      expect(older.items.map((i) => [i.seq, i.content])).toEqual([[1, 'find flights']]);
      expect(older.next_cursor).toBeNull();
      const asc = (await app.inject({ method: 'GET', url: `${url}?order=asc`, headers: auth })).json() as { items: ItemJson[] };
      expect(asc.items.map((i) => i.seq)).toEqual([1, 2, 3]);
    });

    it('forks, batch-gets and batch-deletes', async () => {
      const a = await create({ title: 'parent' });
      await app.inject({
        method: 'POST',
        url: `/v1/sessions/${a.id}/items`,
        headers: auth,
        payload: { items: [{ role: 'user', content: 'hi' }] },
      });
      const fork = await app.inject({ method: 'POST', url: `/v1/sessions/${a.id}/fork`, headers: auth, payload: { title: 'child' } });
      expect(fork.statusCode).toBe(201);
      const child = fork.json() as { id: string; parent_session_id: string; title: string };
      expect(child).toMatchObject({ parent_session_id: a.id, title: 'child' });
      const items = (await app.inject({ method: 'GET', url: `/v1/sessions/${child.id}/items`, headers: auth })).json() as {
        items: { content: unknown }[];
      };
      expect(items.items.map((i) => i.content)).toEqual(['hi']);

      const missing = '00000000-0000-4000-8000-000000000001';
      const got = (
        await app.inject({ method: 'POST', url: '/v1/sessions:batch-get', headers: auth, payload: { ids: [a.id, child.id, missing] } })
      ).json() as { sessions: { id: string }[]; not_found: string[] };
      expect(got.sessions.map((x) => x.id).sort()).toEqual([a.id, child.id].sort());
      expect(got.not_found).toEqual([missing]);

      const deleted = (
        await app.inject({
          method: 'POST',
          url: '/v1/sessions:batch-delete',
          headers: auth,
          payload: { ids: [a.id, child.id, missing], purge: true },
        })
      ).json() as { deleted: string[]; not_found: string[] };
      expect(deleted.deleted.sort()).toEqual([a.id, child.id].sort());
      expect(deleted.not_found).toEqual([missing]);
    });

    describe('rejects bad input with a 4xx problem and changes nothing', () => {
      const bad: [string, () => Promise<LightMyRequestResponse>, number, string][] = [];
      let id = '';
      let nearlyFull = '';
      const add = (name: string, status: number, code: string, req: () => Promise<LightMyRequestResponse>) =>
        bad.push([name, req, status, code]);

      beforeAll(async () => {
        id = (await create({ metadata: { a: 1 } })).id;
        nearlyFull = (await create({ metadata: { a: 'x'.repeat(600) } })).id;
      });

      add('malformed id', 400, 'validation_failed', () => app.inject({ method: 'GET', url: '/v1/sessions/not%20an%20id', headers: auth }));
      add('malformed id on write', 400, 'validation_failed', () =>
        app.inject({ method: 'PATCH', url: '/v1/sessions/.hidden', headers: auth, payload: { title: 'x' } }),
      );
      add('client id outside the id pattern', 400, 'validation_failed', () =>
        app.inject({ method: 'POST', url: '/v1/sessions', headers: auth, payload: { id: 'a/b' } }),
      );
      add('PUT with an id outside the id pattern', 400, 'validation_failed', () =>
        app.inject({ method: 'PUT', url: `/v1/sessions/${'x'.repeat(129)}`, headers: auth, payload: {} }),
      );
      add('PUT with an id in the body', 400, 'validation_failed', () =>
        app.inject({ method: 'PUT', url: '/v1/sessions/put-with-id', headers: auth, payload: { id: 'other' } }),
      );
      add('PUT with a bad field', 400, 'validation_failed', () =>
        app.inject({ method: 'PUT', url: '/v1/sessions/put-bad-field', headers: auth, payload: { ttl_seconds: -1 } }),
      );
      add('unknown field', 400, 'validation_failed', () =>
        app.inject({ method: 'POST', url: '/v1/sessions', headers: auth, payload: { usr_id: 'x' } }),
      );
      add('wrong type', 400, 'validation_failed', () =>
        app.inject({ method: 'POST', url: '/v1/sessions', headers: auth, payload: { title: 42 } }),
      );
      add('string where a number belongs', 400, 'validation_failed', () =>
        app.inject({ method: 'POST', url: '/v1/sessions', headers: auth, payload: { ttl_seconds: '60' } }),
      );
      add('metadata that is not an object', 400, 'validation_failed', () =>
        app.inject({ method: 'POST', url: '/v1/sessions', headers: auth, payload: { metadata: [1, 2] } }),
      );
      add('oversized metadata', 413, 'limit_exceeded', () =>
        app.inject({ method: 'POST', url: '/v1/sessions', headers: auth, payload: { metadata: { big: 'x'.repeat(2000) } } }),
      );
      add('oversized metadata on update', 413, 'limit_exceeded', () =>
        app.inject({ method: 'PATCH', url: `/v1/sessions/${id}`, headers: auth, payload: { metadata: { big: 'x'.repeat(2000) } } }),
      );
      add('metadata whose merged result is over the limit', 413, 'limit_exceeded', () =>
        app.inject({ method: 'PATCH', url: `/v1/sessions/${nearlyFull}`, headers: auth, payload: { metadata: { b: 'x'.repeat(600) } } }),
      );
      add('cursor with an out-of-range timestamp', 400, 'invalid_cursor', () =>
        app.inject({
          method: 'GET',
          url: `/v1/sessions?cursor=${Buffer.from(JSON.stringify({ t: '99999999999999999999', i: id })).toString('base64url')}`,
          headers: auth,
        }),
      );
      add('cursor with a malformed id', 400, 'invalid_cursor', () =>
        app.inject({
          method: 'GET',
          url: `/v1/sessions?cursor=${Buffer.from(JSON.stringify({ t: '1', i: ' '.repeat(36) })).toString('base64url')}`,
          headers: auth,
        }),
      );
      add('updated_after out of the database range', 400, 'validation_failed', () =>
        app.inject({ method: 'GET', url: '/v1/sessions?updated_after=0000-01-01T00:00:00Z', headers: auth }),
      );
      add('a NUL character in a title', 400, 'validation_failed', () =>
        app.inject({ method: 'POST', url: '/v1/sessions', headers: auth, payload: { title: 'a\u0000b' } }),
      );
      add('a NUL character in item content', 400, 'validation_failed', () =>
        app.inject({ method: 'POST', url: `/v1/sessions/${id}/items`, headers: auth, payload: { items: [{ role: 'user', content: 'a\u0000b' }] } }),
      );
      add('If-Match with purge', 400, 'validation_failed', () =>
        app.inject({ method: 'DELETE', url: `/v1/sessions/${id}?purge=true`, headers: { ...auth, 'if-match': '"1"' } }),
      );
      add('malformed JSON', 400, 'malformed_json', () =>
        app.inject({ method: 'POST', url: '/v1/sessions', headers: { ...auth, 'content-type': 'application/json' }, payload: '{"a":' }),
      );
      add('unsupported media type', 415, 'unsupported_media_type', () =>
        app.inject({ method: 'POST', url: '/v1/sessions', headers: { ...auth, 'content-type': 'text/xml' }, payload: '<a/>' }),
      );
      add('body too large', 413, 'payload_too_large', () =>
        app.inject({ method: 'POST', url: '/v1/sessions', headers: auth, payload: { title: 'x'.repeat(2_000_000) } }),
      );
      add('garbage cursor', 400, 'invalid_cursor', () =>
        app.inject({ method: 'GET', url: '/v1/sessions?cursor=bm90LWEtY3Vyc29y', headers: auth }),
      );
      add('non-base64 cursor', 400, 'invalid_cursor', () =>
        app.inject({ method: 'GET', url: `/v1/sessions/${id}/items?cursor=%%%`, headers: auth }),
      );
      add('page size above the maximum', 400, 'validation_failed', () =>
        app.inject({ method: 'GET', url: '/v1/sessions?limit=1000', headers: auth }),
      );
      add('unknown query parameter', 400, 'validation_failed', () =>
        app.inject({ method: 'GET', url: '/v1/sessions?colour=red', headers: auth }),
      );
      add('invalid status filter', 400, 'validation_failed', () =>
        app.inject({ method: 'GET', url: '/v1/sessions?status=sleeping', headers: auth }),
      );
      add('invalid transition', 409, 'invalid_transition', () =>
        app.inject({ method: 'PATCH', url: `/v1/sessions/${id}`, headers: auth, payload: { status: 'expired' } }),
      );
      add('empty update', 400, 'validation_failed', () =>
        app.inject({ method: 'PATCH', url: `/v1/sessions/${id}`, headers: auth, payload: {} }),
      );
      add('invalid If-Match', 400, 'validation_failed', () =>
        app.inject({ method: 'PATCH', url: `/v1/sessions/${id}`, headers: { ...auth, 'if-match': 'abc' }, payload: { title: 'x' } }),
      );
      add('negative counter', 400, 'validation_failed', () =>
        app.inject({ method: 'POST', url: `/v1/sessions/${id}/counters`, headers: auth, payload: { total_turns: -1 } }),
      );
      add('unknown counter', 400, 'validation_failed', () =>
        app.inject({ method: 'POST', url: `/v1/sessions/${id}/counters`, headers: auth, payload: { turns: 1 } }),
      );
      add('item without content', 400, 'validation_failed', () =>
        app.inject({ method: 'POST', url: `/v1/sessions/${id}/items`, headers: auth, payload: { items: [{ role: 'user' }] } }),
      );
      add('item with an empty role', 400, 'validation_failed', () =>
        app.inject({ method: 'POST', url: `/v1/sessions/${id}/items`, headers: auth, payload: { items: [{ role: '', content: 'x' }] } }),
      );
      add('one client_id twice in a batch', 400, 'validation_failed', () =>
        app.inject({
          method: 'POST',
          url: `/v1/sessions/${id}/items`,
          headers: auth,
          payload: { items: [{ client_id: 'm', content: 'a' }, { client_id: 'm', content: 'b' }] },
        }),
      );
      add('empty client_id', 400, 'validation_failed', () =>
        app.inject({ method: 'POST', url: `/v1/sessions/${id}/items`, headers: auth, payload: { items: [{ client_id: '', content: 'x' }] } }),
      );
      add('client_id over 256 characters', 400, 'validation_failed', () =>
        app.inject({
          method: 'POST',
          url: `/v1/sessions/${id}/items`,
          headers: auth,
          payload: { items: [{ client_id: 'c'.repeat(257), content: 'x' }] },
        }),
      );
      add('client_id not a string', 400, 'validation_failed', () =>
        app.inject({ method: 'POST', url: `/v1/sessions/${id}/items`, headers: auth, payload: { items: [{ client_id: 5, content: 'x' }] } }),
      );
      add('unknown item order', 400, 'validation_failed', () =>
        app.inject({ method: 'GET', url: `/v1/sessions/${id}/items?order=newest`, headers: auth }),
      );
      add('an oldest-first cursor on a newest-first list', 400, 'invalid_cursor', () =>
        app.inject({
          method: 'GET',
          url: `/v1/sessions/${id}/items?order=desc&cursor=${Buffer.from('{"s":3}').toString('base64url')}`,
          headers: auth,
        }),
      );
      add('too many items', 400, 'validation_failed', () =>
        app.inject({
          method: 'POST',
          url: `/v1/sessions/${id}/items`,
          headers: auth,
          payload: { items: Array.from({ length: 101 }, () => ({ role: 'user', content: 'x' })) },
        }),
      );
      add('duplicate client id', 409, 'session_exists', () =>
        app.inject({ method: 'POST', url: '/v1/sessions', headers: auth, payload: { id } }),
      );
      add('unknown session', 404, 'session_not_found', () =>
        app.inject({ method: 'POST', url: '/v1/sessions/00000000-0000-4000-8000-0000000000aa/touch', headers: auth }),
      );
      add('unknown route', 404, 'route_not_found', () => app.inject({ method: 'GET', url: '/v1/nothing', headers: auth }));
      add('batch too large', 400, 'validation_failed', () =>
        app.inject({
          method: 'POST',
          url: '/v1/sessions:batch-get',
          headers: auth,
          payload: { ids: Array.from({ length: 101 }, () => id) },
        }),
      );

      it.each(bad.map(([name, req, status, code]) => ({ name, req, status, code })))(
        '$name → $status $code',
        async ({ req, status, code }) => {
          const before = await snapshot(sessions);
          expectProblem(await req(), status, code);
          expect(await snapshot(sessions)).toBe(before);
        },
      );
    });

    it('purges by its exact id (ids are case-sensitive) and never serves the purged session from a cache', async () => {
      const s = await create();
      expect((await app.inject({ method: 'GET', url: `/v1/sessions/${s.id}`, headers: auth })).statusCode).toBe(200);
      const other = await app.inject({ method: 'DELETE', url: `/v1/sessions/${s.id.toUpperCase()}?purge=true`, headers: auth });
      expect(other.statusCode).toBe(404);
      const purged = await app.inject({ method: 'DELETE', url: `/v1/sessions/${s.id}?purge=true`, headers: auth });
      expect(purged.statusCode).toBe(204);
      expectProblem(await app.inject({ method: 'GET', url: `/v1/sessions/${s.id}`, headers: auth }), 404, 'session_not_found');
    });

    it('refuses a counter total the column cannot hold with a 400, and keeps counting below it', async () => {
      const s = await create();
      let last: LightMyRequestResponse | null = null;
      for (let i = 0; i < 12; i++) {
        last = await app.inject({ method: 'POST', url: `/v1/sessions/${s.id}/counters`, headers: auth, payload: { total_cost_usd: 1e9 } });
        if (last.statusCode !== 200) break;
      }
      expectProblem(last as LightMyRequestResponse, 400, 'validation_failed');
      const ok = await app.inject({ method: 'POST', url: `/v1/sessions/${s.id}/counters`, headers: auth, payload: { total_turns: 1 } });
      expect(ok.statusCode).toBe(200);
    });

    it('names failed dependencies on /ready without their details', async () => {
      const body = (await app.inject({ method: 'GET', url: '/ready' })).json() as { dependencies: Record<string, unknown>[] };
      for (const d of body.dependencies) expect(Object.keys(d).sort()).toEqual(['latency_ms', 'name', 'ok']);
    });

    it('serves the OpenAPI document and the console', async () => {
      const doc = (await app.inject({ method: 'GET', url: '/docs/json' })).json() as { paths: Record<string, unknown> };
      expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/v1/sessions', '/v1/sessions/{id}', '/v1/sessions/{id}/items']));
      const page = await app.inject({ method: 'GET', url: '/' });
      expect(page.statusCode).toBe(200);
      expect(page.headers['content-type']).toMatch(/text\/html/);
      // Scripts and styles from this origin only: no inline code, no CDN.
      const csp = String(page.headers['content-security-policy']);
      expect(csp).toContain("script-src 'self'");
      expect(csp).not.toContain('unsafe-inline');
      expect(page.body).not.toMatch(/<script(?![^>]*\bsrc="\/console\/)/);
      expect(page.body).not.toMatch(/https?:\/\//);
      for (const name of readdirSync(new URL('../../src/server/console/', import.meta.url))) {
        if (name === 'index.html') continue;
        const asset = await app.inject({ method: 'GET', url: `/console/${name}` });
        expect(asset.statusCode, name).toBe(200);
        expect(asset.headers['content-type'], name).toMatch(name.endsWith('.js') ? /text\/javascript/ : /text\/css/);
        expect(asset.headers['content-security-policy'], name).toBe(csp);
        // The key lives in sessionStorage (SPEC §17), never in localStorage.
        expect(asset.body, name).not.toMatch(/localStorage\.(setItem|getItem)/);
      }
      for (const url of ['/console/nope.js', '/console/..%2Fpackage.json', '/console/index.html']) {
        expect((await app.inject({ method: 'GET', url })).statusCode, url).toBe(404);
      }
    });
  });
}
