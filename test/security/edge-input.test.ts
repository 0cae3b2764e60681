/**
 * Bad input the property test once missed, over a real socket, embedded and on
 * PostgreSQL+Redis: JSON nested thousands of levels deep or with too many nodes, numbers the
 * store would change, requests Node's HTTP parser refuses, and a body over the limit still
 * being sent. Each gets a 4xx problem+json, never a 5xx, and changes nothing: every table is
 * compared before and after, and the session reads back as it was.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import type { Sessions } from '../../src/internal.js';
import { which } from '../setup/services.js';
import { listen, makeKey, rawAnswers, rawRequest, requireServices, snapshot, STORAGE_MODES, type RawAnswer } from './support.js';
import { requireBinaries } from '../setup/harness.js';

const run = promisify(execFile);
const haveCurl = requireBinaries(['curl'], 'security/edge input: a too-large body sent by curl', (n) => which(n));

const deepObject = (depth: number) => `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;
const deepArray = (depth: number) => `${'['.repeat(depth)}${']'.repeat(depth)}`;

/** Each route that takes JSON, with `X` where the hostile value goes. */
const JSON_ROUTES: readonly { method: string; path: (id: string) => string; body: string }[] = [
  { method: 'POST', path: () => '/v1/sessions', body: '{"metadata":{"k":X}}' },
  { method: 'PATCH', path: (id) => `/v1/sessions/${id}`, body: '{"metadata":{"k":X}}' },
  { method: 'POST', path: (id) => `/v1/sessions/${id}/fork`, body: '{"metadata":{"k":X}}' },
  { method: 'POST', path: (id) => `/v1/sessions/${id}/items`, body: '{"items":[{"role":"user","content":X}]}' },
  { method: 'POST', path: (id) => `/v1/sessions/${id}/runs`, body: '{"input":X}' },
  { method: 'POST', path: (id) => `/v1/sessions/${id}/input`, body: '{"input":X}' },
  { method: 'POST', path: (id) => `/v1/sessions/${id}/counters`, body: '{"total_turns":X}' },
  { method: 'POST', path: () => '/v1/sessions:batch-get', body: '{"ids":[X]}' },
];

for (const mode of STORAGE_MODES) {
  describe.skipIf(!requireServices(mode.services, `security/edge input (${mode.name})`))(
    `bad input at the edge, over a socket (${mode.name})`,
    { timeout: 120_000 },
    () => {
      let sessions: Sessions;
      let dispose: () => Promise<void>;
      let app: FastifyInstance;
      let port: number;
      let base: string;
      let key: string;
      let sessionId: string;

      beforeAll(async () => {
        // No background sweeps or limits: the tables must stay exactly as they were.
        ({ sessions, dispose } = await mode.open({ sweepIntervalMs: 0, rateLimitPerMinute: 0, authFailuresPerMinute: 0 }));
        ({ app, port, base } = await listen(sessions));
        key = await makeKey(sessions, 'edge', ['read', 'write', 'runs']);
        const s = await sessions.create({ metadata: { keep: 9007199254740991, big: 1e300 } }, { tenant: 'edge' });
        sessionId = s.id;
        await sessions.items.append(sessionId, [{ role: 'user', content: 'hello' }], { tenant: 'edge' });
      });

      afterAll(async () => {
        await app?.close();
        await dispose?.();
      });

      const send = (method: string, path: string, body: string) =>
        fetch(base + path, { method, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body });

      /** Sends every route with `value` planted; each answer is `code`, and nothing changed. */
      async function refusedEverywhere(value: string, code: string): Promise<void> {
        const before = await snapshot(sessions);
        const stored = await sessions.get(sessionId, { tenant: 'edge' });
        for (const route of JSON_ROUTES) {
          const res = await send(route.method, route.path(sessionId), route.body.replace('X', value));
          const where = `${route.method} ${route.path('{id}')} with ${value.slice(0, 30)}`;
          expect(res.status, where).toBe(400);
          expect(res.headers.get('content-type'), where).toContain('application/problem+json');
          const problem = (await res.json()) as { code: string; status: number };
          expect(problem, where).toMatchObject({ code, status: 400 });
        }
        expect(await snapshot(sessions)).toEqual(before);
        expect(await sessions.get(sessionId, { tenant: 'edge' })).toEqual(stored);
      }

      it('JSON nested past the depth limit, up to 100,000 levels: 400 json_too_deep on every route', async () => {
        for (const depth of [257, 5_000, 100_000]) {
          await refusedEverywhere(deepObject(depth), 'json_too_deep');
          await refusedEverywhere(deepArray(depth), 'json_too_deep');
        }
      });

      it('more nodes than the limit: 400 json_too_large on every route', async () => {
        await refusedEverywhere(`[${Array(100_001).fill('0').join(',')}]`, 'json_too_large');
      });

      it('numbers the store would change: 400 number_out_of_range on every route, the stored ones read back exactly', async () => {
        for (const n of ['1e309', '-1e309', '9007199254740993', '-9007199254740993', '9007199254740993.0', '123456789012345678901234567890', '1e-400', '0.10000000000000000001']) {
          await refusedEverywhere(n, 'number_out_of_range');
        }
        const s = await (await fetch(`${base}/v1/sessions/${sessionId}`, { headers: { authorization: `Bearer ${key}` } })).json();
        expect((s as { metadata: unknown }).metadata).toEqual({ keep: 9007199254740991, big: 1e300 });
      });

      it('strings that are not Unicode: 400 invalid_unicode on every route, for an unpaired surrogate or bytes that are not UTF-8', async () => {
        await refusedEverywhere('"\\ud800"', 'invalid_unicode');
        await refusedEverywhere('{"\\udc00x":1}', 'invalid_unicode');
        const before = await snapshot(sessions);
        const bytes = Buffer.concat([Buffer.from('{"metadata":{"k":"'), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from('"}}')]);
        const res = await fetch(`${base}/v1/sessions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
          body: bytes,
        });
        expect(res.status).toBe(400);
        expect(((await res.json()) as { code: string }).code).toBe('invalid_unicode');
        expect(await snapshot(sessions)).toEqual(before);
      });

      it('a bad request pipelined behind a good one: the good one gets its own answer first', async () => {
        const get = `GET /v1/sessions/${sessionId} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\n\r\n`;
        const answers = await rawAnswers(port, `${get}get /v1/sessions HTTP/1.1\r\nHost: x\r\n\r\n`, 2);
        expect(answers.map((a) => a.status)).toEqual([200, 400]);
        expect(JSON.parse(answers[0]?.body ?? '{}')).toMatchObject({ id: sessionId });
        expect(JSON.parse(answers[1]?.body ?? '{}')).toMatchObject({ code: 'malformed_request' });
      });

      it('Expect: 100-continue with a body over the limit is refused before it is sent; other expectations get a 417', async () => {
        const head = (expect: string) =>
          `POST /v1/sessions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\nContent-Type: application/json\r\nContent-Length: 5000000\r\nExpect: ${expect}\r\n\r\n`;
        const refused = await rawRequest(port, head('100-continue'));
        expect(refused.status).toBe(413);
        expect(JSON.parse(refused.body)).toMatchObject({ code: 'payload_too_large' });
        const odd = await rawRequest(port, head('something-else'));
        expect(odd.status).toBe(417);
        expect(JSON.parse(odd.body)).toMatchObject({ code: 'expectation_failed' });
        // Under the limit the body is invited and the request served.
        const body = '{"metadata":{"via":"continue"}}';
        const served = await rawAnswers(
          port,
          `POST /v1/sessions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nExpect: 100-continue\r\n\r\n${body}`,
          2,
        );
        expect(served.map((a) => a.status)).toEqual([100, 201]);
        await sessions.terminate((JSON.parse(served[1]?.body ?? '{}') as { id: string }).id, 'test', { tenant: 'edge' });
      });

      it('requests the HTTP parser refuses: a problem+json 400 or 431, and the server goes on', async () => {
        const auth = `Authorization: Bearer ${key}\r\n`;
        const cases: [string, string, number, string][] = [
          ['a header over 16 KiB', `GET /v1/sessions HTTP/1.1\r\nHost: x\r\n${auth}X-Long: ${'a'.repeat(20_000)}\r\n\r\n`, 431, 'headers_too_large'],
          ['a URL over 16 KiB', `GET /v1/sessions?q=${'a'.repeat(20_000)} HTTP/1.1\r\nHost: x\r\n${auth}\r\n`, 431, 'headers_too_large'],
          ['a NUL in a header name', `GET /v1/sessions HTTP/1.1\r\nHost: x\r\nX-\0: 1\r\n${auth}\r\n`, 400, 'malformed_request'],
          ['a space in a header name', `GET /v1/sessions HTTP/1.1\r\nHost: x\r\nX A: 1\r\n${auth}\r\n`, 400, 'malformed_request'],
          ['a folded header', `GET /v1/sessions HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  2\r\n${auth}\r\n`, 400, 'malformed_request'],
          ['a lower-case method', `get /v1/sessions HTTP/1.1\r\nHost: x\r\n${auth}\r\n`, 400, 'malformed_request'],
          ['a raw CR in the path', `GET /v1/ses\rsions HTTP/1.1\r\nHost: x\r\n${auth}\r\n`, 400, 'malformed_request'],
          ['no Host', `GET /v1/sessions HTTP/1.1\r\n${auth}\r\n`, 400, 'malformed_request'],
          [
            'Content-Length and Transfer-Encoding',
            `POST /v1/sessions HTTP/1.1\r\nHost: x\r\n${auth}Content-Type: application/json\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n`,
            400,
            'malformed_request',
          ],
          [
            'a chunk size that is not hex',
            `POST /v1/sessions HTTP/1.1\r\nHost: x\r\n${auth}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n`,
            400,
            'malformed_request',
          ],
          [
            'two Content-Lengths',
            `POST /v1/sessions HTTP/1.1\r\nHost: x\r\n${auth}Content-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}`,
            400,
            'malformed_request',
          ],
        ];
        const before = await snapshot(sessions);
        for (const [what, bytes, status, code] of cases) {
          const res: RawAnswer = await rawRequest(port, bytes);
          expect(res.status, what).toBe(status);
          expect(res.headers['content-type'], what).toContain('application/problem+json');
          expect(JSON.parse(res.body), what).toMatchObject({ code, status });
        }
        expect(await snapshot(sessions)).toEqual(before);
        const health = await fetch(`${base}/health`);
        expect(health.status).toBe(200);
      });

      it('a body over the limit: the 413 reaches a client still sending (fetch, curl, a raw socket), nothing stored', async () => {
        const before = await snapshot(sessions);
        const body = `{"metadata":{"x":"${'a'.repeat(2_000_000)}"}}`;
        for (let i = 0; i < 15; i++) {
          const res = await send('POST', '/v1/sessions', body);
          expect(res.status).toBe(413);
          expect(((await res.json()) as { code: string }).code).toBe('payload_too_large');
        }
        // A client that writes the whole body whatever the server says, chunk by chunk.
        for (let i = 0; i < 10; i++) {
          const res = await rawRequest(
            port,
            Buffer.concat([
              Buffer.from(`POST /v1/sessions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`),
              Buffer.from(body),
            ]),
          );
          expect(res.error, 'the client saw its connection reset').toBeNull();
          expect(res.status).toBe(413);
          expect(res.headers['content-type']).toContain('application/problem+json');
        }
        if (haveCurl) {
          const dir = await mkdtemp(join(tmpdir(), 'edge-'));
          const file = join(dir, 'body.json');
          await writeFile(file, body);
          try {
            for (let i = 0; i < 5; i++) {
              const { stdout } = await run('curl', [
                '-sS', '-m', '20', '-w', '\n%{http_code}',
                '-H', `authorization: Bearer ${key}`, '-H', 'content-type: application/json',
                '--data-binary', `@${file}`, `${base}/v1/sessions`,
              ]);
              const [json = '', status] = stdout.split('\n');
              expect(status).toBe('413');
              expect((JSON.parse(json) as { code: string }).code).toBe('payload_too_large');
            }
          } finally {
            await rm(dir, { recursive: true, force: true });
          }
        }
        expect(await snapshot(sessions)).toEqual(before);
      });
    },
  );
}
