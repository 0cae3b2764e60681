/**
 * The client's parts that need no server: the SSE parser on awkward chunking, error answers
 * of every form, timeouts and the requests it builds (through a recording fetch).
 */
import { describe, expect, it } from 'vitest';
import { AgentSessionsClient, AgentSessionsHttpError, parseSse, type FetchFunction, type SseMessage } from '../../src/client/index.js';
import { parseRetryAfter } from '../../src/client/errors.js';

function bodyOf(chunks: string[]): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  return new ReadableStream({
    start(controller) {
      for (const c of chunks) controller.enqueue(encoder.encode(c));
      controller.close();
    },
  });
}

async function parseAll(chunks: string[]): Promise<SseMessage[]> {
  const out: SseMessage[] = [];
  for await (const m of parseSse(bodyOf(chunks))) out.push(m);
  return out;
}

interface Recorded {
  url: string;
  method: string;
  headers: Record<string, string>;
  body: string | undefined;
}

function recordingFetch(respond: (r: Recorded) => Response): { fetch: FetchFunction; calls: Recorded[] } {
  const calls: Recorded[] = [];
  const fn: FetchFunction = async (input, init) => {
    const r: Recorded = {
      url: String(input),
      method: init?.method ?? 'GET',
      headers: Object.fromEntries(new Headers(init?.headers).entries()),
      body: init?.body === undefined ? undefined : String(init.body),
    };
    calls.push(r);
    return respond(r);
  };
  return { fetch: fn, calls };
}

const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json', ...headers } });

describe('parseSse', () => {
  it('parses id, event, multi-line data and retry; skips comments', async () => {
    const messages = await parseAll([': open\n\nretry: 1500\nid: 7\nevent: text\ndata: {"a":1}\n\n', 'data: line one\ndata: line two\n\n']);
    expect(messages).toEqual([
      { id: '7', event: 'text', data: '{"a":1}', retry: 1500 },
      { id: undefined, event: 'message', data: 'line one\nline two', retry: undefined },
    ]);
  });

  it('reports a retry-only frame and an id-only frame without yielding them as events', async () => {
    const retries: number[] = [];
    const ids: string[] = [];
    const body = new Response('retry: 2000\n: connected\n\nid: 41\n\nid: 42\ndata: {}\n\n').body as ReadableStream<Uint8Array>;
    const messages = [];
    for await (const m of parseSse(body, { onRetry: (ms) => retries.push(ms), onId: (id) => ids.push(id) })) messages.push(m);
    expect(retries).toEqual([2000]);
    expect(ids).toEqual(['41']);
    expect(messages).toEqual([{ id: '42', event: 'message', data: '{}', retry: undefined }]);
  });

  it('handles frames and CRLF line ends split anywhere across chunks', async () => {
    const whole = 'id: 1\r\nevent: a\r\ndata: x\r\n\r\nid: 2\rdata: y\r\r';
    for (let cut = 1; cut < whole.length; cut++) {
      const messages = await parseAll([whole.slice(0, cut), whole.slice(cut)]);
      expect(messages.map((m) => [m.id, m.event, m.data]), `cut at ${cut}`).toEqual([
        ['1', 'a', 'x'],
        ['2', 'message', 'y'],
      ]);
    }
  });

  it('drops an unterminated last frame', async () => {
    expect(await parseAll(['id: 1\ndata: whole\n\nid: 2\ndata: half'])).toHaveLength(1);
  });
});

describe('AgentSessionsClient requests and errors', () => {
  it('builds URLs, auth, If-Match and bodies', async () => {
    const rec = recordingFetch(() => json(200, { sessions: [], next_cursor: null }));
    const client = new AgentSessionsClient({ baseUrl: 'http://example.test/api/', apiKey: 'k1', fetch: rec.fetch });
    await client.list({ user_id: 'a b', limit: 5 });
    await client.update('s1', { title: 't' }, { expectedRevision: 4 });
    await client.update('s1', { title: 't' }, { ifMatch: 'W/"9"' });
    await client.terminate('s/1', { reason: 'bye' });
    await client.runs.interrupt('s1');
    expect(rec.calls.map((c) => `${c.method} ${c.url}`)).toEqual([
      'GET http://example.test/api/v1/sessions?user_id=a+b&limit=5',
      'PATCH http://example.test/api/v1/sessions/s1',
      'PATCH http://example.test/api/v1/sessions/s1',
      'DELETE http://example.test/api/v1/sessions/s%2F1?reason=bye',
      'POST http://example.test/api/v1/sessions/s1/interrupt',
    ]);
    expect(rec.calls[0]?.headers.authorization).toBe('Bearer k1');
    expect(rec.calls[0]?.headers['content-type']).toBeUndefined();
    expect(rec.calls[1]?.headers['if-match']).toBe('"4"');
    expect(rec.calls[1]?.headers['content-type']).toBe('application/json');
    expect(rec.calls[1]?.body).toBe('{"title":"t"}');
    expect(rec.calls[2]?.headers['if-match']).toBe('W/"9"');
    // No body, so no content-type: the server would refuse an empty JSON body.
    expect(rec.calls[3]?.headers['content-type']).toBeUndefined();
    expect(rec.calls[4]?.body).toBeUndefined();
  });

  it('turns a problem answer into an error with its code, and reads Retry-After', async () => {
    const rec = recordingFetch(() =>
      json(429, { type: 'urn:agent-sessions:problem:rate_limited', title: 'Too Many Requests', status: 429, code: 'rate_limited', detail: 'slow down' }, {
        'retry-after': '7',
        'content-type': 'application/problem+json',
      }),
    );
    const client = new AgentSessionsClient({ baseUrl: 'http://example.test', fetch: rec.fetch });
    const err = await client.stats().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AgentSessionsHttpError);
    expect(err).toMatchObject({ status: 429, code: 'rate_limited', title: 'Too Many Requests', detail: 'slow down', retryAfter: 7, retryable: true });
  });

  it('reports an answer that is not a problem by its status', async () => {
    const client = new AgentSessionsClient({
      baseUrl: 'http://example.test',
      fetch: async () => new Response('<html>bad gateway</html>', { status: 502, headers: { 'content-type': 'text/html' } }),
    });
    expect(await client.get('x').catch((e: unknown) => e)).toMatchObject({ status: 502, code: 'http_502', problem: null, retryable: false });
  });

  it('gives up after timeoutMs and honours the caller signal', async () => {
    const hanging: FetchFunction = (_input, init) =>
      new Promise((_resolve, reject) => init?.signal?.addEventListener('abort', () => reject(init.signal?.reason), { once: true }));
    const client = new AgentSessionsClient({ baseUrl: 'http://example.test', fetch: hanging, timeoutMs: 50 });
    await expect(client.health()).rejects.toMatchObject({ name: 'TimeoutError' });
    const controller = new AbortController();
    const pending = client.health({ signal: controller.signal, timeoutMs: 0 });
    controller.abort(new Error('caller gave up'));
    await expect(pending).rejects.toThrow('caller gave up');
  });

  it('stops reconnecting a stream after maxReconnects failures', async () => {
    let attempts = 0;
    const client = new AgentSessionsClient({
      baseUrl: 'http://example.test',
      fetch: async () => {
        attempts++;
        return json(503, { type: 'x', title: 'Service Unavailable', status: 503, code: 'unavailable' }, { 'retry-after': '0' });
      },
    });
    const err = await (async () => {
      for await (const _ of client.runs.stream('s1', { maxReconnects: 2 })) throw new Error('no event expected');
    })().catch((e: unknown) => e);
    expect(err).toMatchObject({ status: 503, code: 'unavailable' });
    expect(attempts).toBe(3);
  });

  it('reconnects a stream that goes silent (half-open connection) after idleTimeoutMs, resuming by id', async () => {
    const lastIds: Array<string | null> = [];
    const client = new AgentSessionsClient({
      baseUrl: 'http://example.test',
      fetch: async (_input, init) => {
        lastIds.push(new Headers(init?.headers).get('last-event-id'));
        const first = lastIds.length === 1;
        const body = new ReadableStream<Uint8Array>({
          start(controller) {
            const enc = new TextEncoder();
            if (first) {
              controller.enqueue(enc.encode('id: 1\nevent: text\ndata: {"seq":1}\n\n'));
              // Then nothing, ever: only the client's abort ends it.
              init?.signal?.addEventListener('abort', () => controller.error(init.signal?.reason));
            } else {
              controller.enqueue(enc.encode('id: 2\nevent: done\ndata: {"seq":2}\n\n'));
              controller.close();
            }
          },
        });
        return new Response(body, { status: 200, headers: { 'content-type': 'text/event-stream' } });
      },
    });
    const seen: unknown[] = [];
    for await (const e of client.runs.stream('s1', { idleTimeoutMs: 200 })) seen.push(e);
    expect(seen).toHaveLength(2);
    expect(lastIds).toEqual([null, '1']);
  });

  it('parses Retry-After as seconds or an HTTP date', () => {
    expect(parseRetryAfter('12')).toBe(12);
    expect(parseRetryAfter(new Date(Date.UTC(2030, 0, 1, 0, 0, 30)).toUTCString(), Date.UTC(2030, 0, 1))).toBe(30);
    expect(parseRetryAfter(null)).toBeUndefined();
    expect(parseRetryAfter('soon')).toBeUndefined();
  });

  it('refuses a base URL that is not http(s)', () => {
    expect(() => new AgentSessionsClient({ baseUrl: 'ftp://x' })).toThrow(TypeError);
  });
});
