/**
 * Idempotency-Key on the POST routes (SPEC §7.1), through app.inject() on every configuration
 * (embedded PGlite in process, PostgreSQL, PostgreSQL+Redis): a retry gets the first answer
 * (same status, headers and body, `Idempotent-Replayed: true`) and executes nothing; concurrent
 * duplicates execute once; the same key with another request is a 422 and changes nothing; a
 * 4xx is not stored; keys are per tenant; an expired key is pruned by the sweeper and executes
 * again; a replayed run start does not launch the run again.
 */
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/server/app.js';
import { internals, type Sessions } from '../../src/internal.js';
import { CONFIGURATIONS, type Backend } from '../conformance/configurations.js';
import { requireServices, uniqueToken } from '../setup/harness.js';

const ADMIN_KEY = 'idem-admin-key-0123456789abcdef';

function expectProblem(res: LightMyRequestResponse, status: number, code: string): void {
  expect(res.statusCode, res.body).toBe(status);
  expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
  expect((res.json() as { code: string }).code).toBe(code);
}

function waitFor(condition: () => boolean | Promise<boolean>, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return (async () => {
    while (!(await condition())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  })();
}

for (const configuration of CONFIGURATIONS) {
  const suite = `idempotency/http/${configuration.name}`;
  const ready = requireServices(configuration.services, suite);

  describe.skipIf(!ready)(suite, () => {
    let backend: Backend;
    let sessions: Sessions;
    let app: FastifyInstance;
    const auth = { authorization: `Bearer ${ADMIN_KEY}` };

    beforeAll(async () => {
      backend = await configuration.prepare();
      sessions = await backend.open({ ADMIN_API_KEY: ADMIN_KEY });
      app = await buildApp({ sessions });
    });

    afterAll(async () => {
      await app?.close();
      await sessions?.close();
      await backend?.dispose();
    });

    const key = () => `k-${uniqueToken()}`;
    const post = (url: string, payload: unknown, headers: Record<string, string> = {}, authHeaders = auth) =>
      app.inject({ method: 'POST', url, headers: { ...authHeaders, ...headers }, payload: payload as InjectOptions['payload'] });
    const newSession = async () => (post('/v1/sessions', {}).then((r) => (r.json() as { id: string }).id));
    const turns = async (id: string) =>
      ((await app.inject({ method: 'GET', url: `/v1/sessions/${id}`, headers: auth })).json() as { total_turns: number }).total_turns;
    const keyRows = async (k: string) =>
      Number((await internals(sessions).db.query<{ n: number }>('SELECT count(*)::int AS n FROM idempotency_keys WHERE key = $1', [k]))[0]?.n);

    it('replays a counters increment: same status, headers and body, counted once', async () => {
      const id = await newSession();
      const k = key();
      const first = await post(`/v1/sessions/${id}/counters`, { total_turns: 1 }, { 'idempotency-key': k });
      expect(first.statusCode, first.body).toBe(200);
      expect(first.headers['idempotent-replayed']).toBeUndefined();
      for (let i = 0; i < 3; i++) {
        const again = await post(`/v1/sessions/${id}/counters`, { total_turns: 1 }, { 'idempotency-key': k });
        expect(again.statusCode).toBe(200);
        expect(again.headers['idempotent-replayed']).toBe('true');
        expect(again.headers.etag).toBe(first.headers.etag);
        expect(again.body).toBe(first.body);
      }
      expect(await turns(id)).toBe(1);
      // Without a key, every call counts.
      await post(`/v1/sessions/${id}/counters`, { total_turns: 1 });
      expect(await turns(id)).toBe(2);
    });

    it('executes concurrent duplicates once', async () => {
      const id = await newSession();
      const k = key();
      const answers = await Promise.all(
        Array.from({ length: 20 }, () => post(`/v1/sessions/${id}/counters`, { total_turns: 1, message_count: 2 }, { 'idempotency-key': k })),
      );
      const first = answers[0] as LightMyRequestResponse;
      for (const a of answers) {
        expect(a.statusCode, a.body).toBe(200);
        expect(a.body).toBe(first.body);
      }
      expect(answers.filter((a) => a.headers['idempotent-replayed'] !== 'true')).toHaveLength(1);
      expect(await turns(id)).toBe(1);
    });

    it('replays a session create (201, location, the same session) and creates one session', async () => {
      const k = key();
      const body = { title: `t-${k}` };
      const first = await post('/v1/sessions', body, { 'idempotency-key': k });
      expect(first.statusCode).toBe(201);
      const again = await post('/v1/sessions', body, { 'idempotency-key': k });
      expect(again.statusCode).toBe(201);
      expect(again.headers.location).toBe(first.headers.location);
      expect(again.headers['idempotent-replayed']).toBe('true');
      expect(again.body).toBe(first.body);
      const rows = await internals(sessions).db.query<{ n: number }>('SELECT count(*)::int AS n FROM sessions WHERE title = $1', [body.title]);
      expect(rows[0]?.n).toBe(1);
    });

    it('the same key with another request is 422 idempotency_key_reused and changes nothing', async () => {
      const id = await newSession();
      const k = key();
      expect((await post(`/v1/sessions/${id}/counters`, { total_turns: 1 }, { 'idempotency-key': k })).statusCode).toBe(200);
      expectProblem(await post(`/v1/sessions/${id}/counters`, { total_turns: 5 }, { 'idempotency-key': k }), 422, 'idempotency_key_reused');
      // Another route, other parameters: another request.
      expectProblem(await post(`/v1/sessions/${id}/touch`, undefined, { 'idempotency-key': k }), 422, 'idempotency_key_reused');
      const other = await newSession();
      expectProblem(await post(`/v1/sessions/${other}/counters`, { total_turns: 1 }, { 'idempotency-key': k }), 422, 'idempotency_key_reused');
      expect(await turns(id)).toBe(1);
      expect(await turns(other)).toBe(0);
      // Key order in the body does not make another request.
      const reordered = await post(`/v1/sessions/${id}/counters`, { message_count: 0, total_turns: 1 }, { 'idempotency-key': `${k}-2` });
      expect(reordered.statusCode).toBe(200);
      const same = await post(`/v1/sessions/${id}/counters`, { total_turns: 1, message_count: 0 }, { 'idempotency-key': `${k}-2` });
      expect(same.headers['idempotent-replayed']).toBe('true');
    });

    it('does not store a 4xx: a 404 with a key, then success with the same key once the session exists', async () => {
      const id = `idem-${uniqueToken()}`;
      const k = key();
      expectProblem(await post(`/v1/sessions/${id}/counters`, { total_turns: 1 }, { 'idempotency-key': k }), 404, 'session_not_found');
      expect(await keyRows(k)).toBe(0);
      expect((await post('/v1/sessions', { id })).statusCode).toBe(201);
      const ok = await post(`/v1/sessions/${id}/counters`, { total_turns: 1 }, { 'idempotency-key': k });
      expect(ok.statusCode, ok.body).toBe(200);
      expect(ok.headers['idempotent-replayed']).toBeUndefined();
      expect(await turns(id)).toBe(1);
    });

    it('does not store a 409: a run start refused while busy succeeds with the same key once the run ended', async () => {
      const id = await newSession();
      const busy = await post(`/v1/sessions/${id}/runs`, { input: { words: 100, delay_ms: 20 }, if_busy: 'reject' });
      expect(busy.statusCode, busy.body).toBe(201);
      const k = key();
      const refused = await post(`/v1/sessions/${id}/runs`, { input: 'next' }, { 'idempotency-key': k });
      expectProblem(refused, 409, 'session_busy');
      expect(await keyRows(k)).toBe(0);
      const busyId = (busy.json() as { id: string }).id;
      await waitFor(
        async () => ((await app.inject({ method: 'GET', url: `/v1/sessions/${id}/runs/${busyId}`, headers: auth })).json() as { status: string }).status !== 'running',
        20_000,
        'the first run to end',
      );
      const started = await post(`/v1/sessions/${id}/runs`, { input: 'next' }, { 'idempotency-key': k });
      expect(started.statusCode, started.body).toBe(201);
      const replay = await post(`/v1/sessions/${id}/runs`, { input: 'next' }, { 'idempotency-key': k });
      expect(replay.statusCode).toBe(201);
      expect(replay.headers['idempotent-replayed']).toBe('true');
      expect(replay.body).toBe(started.body);
      const runs = (await app.inject({ method: 'GET', url: `/v1/sessions/${id}/runs`, headers: auth })).json() as { runs: unknown[] };
      expect(runs.runs).toHaveLength(2);
    });

    it('keys are per tenant: two tenants using one key both execute', async () => {
      const tenants = [`ta${uniqueToken()}`.slice(0, 30), `tb${uniqueToken()}`.slice(0, 30)];
      const keys: string[] = [];
      for (const tenant of tenants) {
        const res = await post('/v1/admin/keys', { tenant, scopes: ['read', 'write', 'runs'] });
        expect(res.statusCode, res.body).toBe(201);
        keys.push((res.json() as { key: string }).key);
      }
      const k = key();
      const answers = [];
      for (const apiKey of keys) {
        const res = await post('/v1/sessions', { title: 'same' }, { 'idempotency-key': k }, { authorization: `Bearer ${apiKey}` });
        expect(res.statusCode).toBe(201);
        expect(res.headers['idempotent-replayed']).toBeUndefined();
        answers.push((res.json() as { id: string }).id);
      }
      expect(answers[0]).not.toBe(answers[1]);
      expect(await keyRows(k)).toBe(2);
    });

    it('an expired key is pruned by the sweeper, and the request then executes again', async () => {
      const id = await newSession();
      const k = key();
      expect((await post(`/v1/sessions/${id}/counters`, { total_turns: 1 }, { 'idempotency-key': k })).statusCode).toBe(200);
      await internals(sessions).db.query(
        "UPDATE idempotency_keys SET created_at = now() - interval '25 hours', expires_at = now() - interval '1 hour' WHERE key = $1",
        [k],
      );
      const pruned = await internals(sessions).sweeper.runOnce();
      expect(pruned.prune_idempotency_keys).toBeGreaterThanOrEqual(1);
      expect(await keyRows(k)).toBe(0);
      const again = await post(`/v1/sessions/${id}/counters`, { total_turns: 1 }, { 'idempotency-key': k });
      expect(again.statusCode).toBe(200);
      expect(again.headers['idempotent-replayed']).toBeUndefined();
      expect(await turns(id)).toBe(2);
    });

    it('erasing a user deletes the stored answers naming their sessions; erasing a tenant deletes all its keys', async () => {
      const user = `eve-${uniqueToken()}`;
      const [k1, k2, k3] = [key(), key(), key()];
      const created = await post('/v1/sessions', { user_id: user }, { 'idempotency-key': k1 });
      const id = (created.json() as { id: string }).id;
      expect((await post(`/v1/sessions/${id}/counters`, { total_turns: 1 }, { 'idempotency-key': k2 })).statusCode).toBe(200);
      expect((await post('/v1/sessions', { user_id: `other-${user}` }, { 'idempotency-key': k3 })).statusCode).toBe(201);
      const erased = await app.inject({ method: 'DELETE', url: `/v1/admin/users/${user}?tenant=default`, headers: auth });
      expect(erased.statusCode, erased.body).toBe(200);
      expect([await keyRows(k1), await keyRows(k2), await keyRows(k3)]).toEqual([0, 0, 1]);

      const tenant = `te${uniqueToken()}`.slice(0, 30);
      const made = await post('/v1/admin/keys', { tenant, scopes: ['read', 'write'] });
      const tenantAuth = { authorization: `Bearer ${(made.json() as { key: string }).key}` };
      const k4 = key();
      expect((await post('/v1/sessions', {}, { 'idempotency-key': k4 }, tenantAuth)).statusCode).toBe(201);
      expect(await keyRows(k4)).toBe(1);
      const gone = await app.inject({ method: 'DELETE', url: `/v1/admin/tenants/${tenant}`, headers: auth });
      expect(gone.statusCode, gone.body).toBe(200);
      expect(await keyRows(k4)).toBe(0);
    });

    it('the library takes idempotencyKey: a repeated increment or append resolves to the first result and executes once', async () => {
      const s = await sessions.create({}, { idempotencyKey: key() });
      const k = key();
      const results = await Promise.all(
        Array.from({ length: 5 }, () => sessions.incrementCounters(s.id, { totalTurns: 1 }, { idempotencyKey: k })),
      );
      for (const r of results) expect(r).toEqual(results[0]);
      expect((await sessions.get(s.id)).totalTurns).toBe(1);
      await expect(sessions.incrementCounters(s.id, { totalTurns: 2 }, { idempotencyKey: k })).rejects.toMatchObject({
        code: 'idempotency_key_reused',
      });
      // One namespace per tenant: the HTTP API sees the key as used by another request.
      expectProblem(await post(`/v1/sessions/${s.id}/counters`, { total_turns: 1 }, { 'idempotency-key': k }), 422, 'idempotency_key_reused');
      const ka = key();
      const first = await sessions.items.append(s.id, [{ role: 'user', content: 'once' }], { idempotencyKey: ka });
      const again = await sessions.items.append(s.id, [{ role: 'user', content: 'once' }], { idempotencyKey: ka });
      expect(again).toEqual(first);
      expect((await sessions.items.list(s.id)).items).toHaveLength(1);
      await expect(sessions.touch(s.id, { idempotencyKey: '' })).rejects.toMatchObject({ code: 'validation_failed' });
      expect((await sessions.get(s.id)).totalTurns).toBe(1);
    });

    it('refuses a malformed key with 400', async () => {
      const id = await newSession();
      for (const bad of ['x'.repeat(256), 'tab\there', '']) {
        const res = await post(`/v1/sessions/${id}/counters`, { total_turns: 1 }, { 'idempotency-key': bad });
        expect(res.statusCode, JSON.stringify(bad)).toBe(400);
      }
      expect((await post(`/v1/sessions/${id}/counters`, { total_turns: 1 }, { 'idempotency-key': 'x'.repeat(255) })).statusCode).toBe(200);
      expect(await turns(id)).toBe(1);
    });

    it('replays every POST route: items, touch, fork, input, interrupt, batches', async () => {
      const id = await newSession();
      const replays: Array<[string, unknown]> = [
        [`/v1/sessions/${id}/items`, { items: [{ role: 'user', content: 'hi' }] }],
        [`/v1/sessions/${id}/touch`, undefined],
        [`/v1/sessions/${id}/fork`, {}],
        ['/v1/sessions:batch-get', { ids: [id] }],
      ];
      // The OpenAPI document names the header on every POST but admin key creation.
      const doc = (await app.inject({ method: 'GET', url: '/docs/json' })).json() as {
        paths: Record<string, Record<string, { parameters?: Array<{ in: string; name: string }> }>>;
      };
      const posts = Object.entries(doc.paths).flatMap(([path, ops]) => (ops.post ? [[path, ops.post] as const] : []));
      expect(posts.length).toBeGreaterThanOrEqual(11);
      for (const [path, op] of posts) {
        const named = (op.parameters ?? []).some((p) => p.in === 'header' && p.name === 'idempotency-key');
        expect(named, path).toBe(path !== '/v1/admin/keys');
      }
      for (const [url, body] of replays) {
        const k = key();
        const first = await post(url, body, { 'idempotency-key': k });
        expect(first.statusCode, `${url} ${first.body}`).toBeLessThan(300);
        const again = await post(url, body, { 'idempotency-key': k });
        expect(again.statusCode, url).toBe(first.statusCode);
        expect(again.headers['idempotent-replayed'], url).toBe('true');
        expect(again.body, url).toBe(first.body);
      }
      const items = (await app.inject({ method: 'GET', url: `/v1/sessions/${id}/items`, headers: auth })).json() as { items: unknown[] };
      expect(items.items).toHaveLength(1);
      // A running run takes input and an interrupt, each once.
      const run = await post(`/v1/sessions/${id}/runs`, { input: { words: 1000, delay_ms: 20 } });
      expect(run.statusCode).toBe(201);
      const ki = key();
      const input = await post(`/v1/sessions/${id}/input`, { input: 'more' }, { 'idempotency-key': ki });
      expect(input.statusCode, input.body).toBe(202);
      const inputAgain = await post(`/v1/sessions/${id}/input`, { input: 'more' }, { 'idempotency-key': ki });
      expect(inputAgain.body).toBe(input.body);
      expect(inputAgain.headers['idempotent-replayed']).toBe('true');
      const inputs = await internals(sessions).db.query<{ n: number }>('SELECT count(*)::int AS n FROM run_inputs WHERE run_id = $1', [
        (run.json() as { id: string }).id,
      ]);
      expect(inputs[0]?.n).toBe(1);
      const kx = key();
      const interrupt = await post(`/v1/sessions/${id}/interrupt`, {}, { 'idempotency-key': kx });
      expect(interrupt.statusCode, interrupt.body).toBe(202);
      const interruptAgain = await post(`/v1/sessions/${id}/interrupt`, {}, { 'idempotency-key': kx });
      expect(interruptAgain.body).toBe(interrupt.body);
      expect(interruptAgain.headers['idempotent-replayed']).toBe('true');
      const kd = key();
      const doomed = await newSession();
      const del = await post('/v1/sessions:batch-delete', { ids: [doomed] }, { 'idempotency-key': kd });
      expect(del.json()).toEqual({ deleted: [doomed], not_found: [] });
      const delAgain = await post('/v1/sessions:batch-delete', { ids: [doomed] }, { 'idempotency-key': kd });
      expect(delAgain.body).toBe(del.body);
    });
  });
}

describe('idempotency/run start/embedded', () => {
  it('a replayed run start returns the same run and does not launch it again', async () => {
    const { createSessions } = await import('../../src/internal.js');
    let launched = 0;
    let release: () => void = () => undefined;
    const held = new Promise<void>((r) => (release = r));
    const sessions = await createSessions({
      env: { DATA_DIR: ':memory:', SWEEP_INTERVAL_MS: '0', ADMIN_API_KEY: ADMIN_KEY },
      agent: async () => {
        launched++;
        await held;
      },
    });
    const app = await buildApp({ sessions });
    try {
      const auth = { authorization: `Bearer ${ADMIN_KEY}` };
      const id = ((await app.inject({ method: 'POST', url: '/v1/sessions', headers: auth, payload: {} })).json() as { id: string }).id;
      const start = () =>
        app.inject({ method: 'POST', url: `/v1/sessions/${id}/runs`, headers: { ...auth, 'idempotency-key': 'run-1' }, payload: { input: 'x' } });
      const answers = await Promise.all([start(), start(), start(), start(), start()]);
      for (const a of answers) {
        expect(a.statusCode, a.body).toBe(201);
        expect(a.body).toBe(answers[0]?.body);
      }
      await waitFor(() => launched > 0, 10_000, 'the launch');
      const later = await start();
      expect(later.body).toBe(answers[0]?.body);
      const runs = (await app.inject({ method: 'GET', url: `/v1/sessions/${id}/runs`, headers: auth })).json() as { runs: unknown[] };
      expect(runs.runs).toHaveLength(1);
      expect(launched).toBe(1);
      release();
    } finally {
      release();
      await app.close();
      await sessions.close();
    }
  });
});
