/**
 * `agent-sessions/ai-sdk` against the real `ai` package, once per major version: v6 (`ai`, on
 * Node 20 and up) and v7 (`ai7`, an npm alias of `ai@^7`, which needs Node 22: on an older Node
 * its suites are reported skipped with the reason). No network: a scripted `MockLanguageModelV3`.
 * On PostgreSQL + Redis:
 *
 * - HTTP client mode, two `agent-sessions serve` processes A and B: a reply produced by the
 *   SDK (`streamText` with a tool, two steps) is run on A by the command runner (the chunks,
 *   printed by test/fixtures/script-agent.mjs, paused half way); the SDK's own `Chat` (what
 *   `useChat` drives) with `DefaultChatTransport` resumes it through instance A's
 *   `resumeStream`, is cut mid-stream, and resumes through instance B's: the assembled
 *   message equals the one the SDK produced, once, no part duplicated or missing; the SDK's
 *   `readUIMessageStream` over `parseJsonEventStream` of the replay gives it too. A run of
 *   plain `text`/`tool_call`/`tool_result` events becomes the message those events describe.
 *   204 when idle; messages saved and loaded, a re-sent message replaced in place.
 * - Library mode, two `createSessions` instances: `pipeUIMessageStreamToRun` writes
 *   `streamText(...).toUIMessageStream()` into a run on A whose `onFinish` saves the chat;
 *   a chat on B resumes it (cut and resumed again); loading from B gives the same messages;
 *   `{ replace: true }` drops a regenerated reply; an interrupt from B stops the model call on A.
 */
import { fileURLToPath } from 'node:url';
// Types only: the SDK's code comes from the version under test (`SDKS` below).
import type { AbstractChat, ChatState, ChatStatus, DefaultChatTransport, parseJsonEventStream, UIMessage, UIMessageChunk } from 'ai';
import type { MockLanguageModelV3 } from 'ai/test';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { AgentSessionsClient } from '../../src/client/index.js';
import { createSessions, type Sessions } from '../../src/index.js';
import {
  createChatStore,
  outputEventOfChunk,
  pipeUIMessageStreamToRun,
  UIMessageChunkTranslator,
  type ChatStore,
} from '../../src/integrations/ai-sdk.js';
import { freshDatabase, requireServices, serviceUrl, skipSuite, uniqueKeyPrefix, uniqueToken, type FreshDatabase } from '../setup/harness.js';
import { startServer, type ServerProcess } from '../setup/server-process.js';

const FIXTURE = fileURLToPath(new URL('../fixtures/script-agent.mjs', import.meta.url));
const ADMIN = `ai-sdk-admin-${uniqueToken()}`;

// --- The SDK versions under test ------------------------------------------------------------

/**
 * The SDK's runtime, `ai` and `ai/test`. Typed as v6 for both versions: the test is
 * type-checked against v6 only, v7 is checked by running it.
 */
interface Sdk {
  ai: typeof import('ai');
  test: typeof import('ai/test');
}
const NODE_MAJOR = Number(process.versions.node.split('.')[0]);
const SDKS: Array<{ label: string; sdk?: Sdk; skip?: string }> = [
  { label: 'ai 6', sdk: { ai: await import('ai'), test: await import('ai/test') } },
  NODE_MAJOR >= 22
    ? { label: 'ai 7', sdk: { ai: (await import('ai7')) as unknown as Sdk['ai'], test: (await import('ai7/test')) as unknown as Sdk['test'] } }
    : { label: 'ai 7', skip: `ai 7 needs Node >= 22, this is Node ${process.versions.node}` },
];

// --- The SDK side: a scripted model, the chat as useChat holds it, the stream reader -----------

type ModelPart = Awaited<ReturnType<MockLanguageModelV3['doStream']>>['stream'] extends ReadableStream<infer P> ? P : never;
const usage = { inputTokens: { total: 10, noCache: 10, cacheRead: undefined, cacheWrite: undefined }, outputTokens: { total: 5, text: 5, reasoning: undefined } };

/** Step 1 says a sentence and calls `weather`; step 2 answers from the tool's output. */
const STEPS: ModelPart[][] = [
  [
    { type: 'stream-start', warnings: [] },
    { type: 'text-start', id: 't1' },
    ...['Let ', 'me ', 'check ', 'the ', 'weather.'].map((delta) => ({ type: 'text-delta' as const, id: 't1', delta })),
    { type: 'text-end', id: 't1' },
    { type: 'tool-call', toolCallId: 'call_1', toolName: 'weather', input: '{"city":"Paris"}' },
    { type: 'finish', finishReason: { unified: 'tool-calls', raw: undefined }, usage },
  ],
  [
    { type: 'stream-start', warnings: [] },
    { type: 'text-start', id: 't2' },
    ...['It ', 'is ', '21 °C ', 'in ', 'Paris.'].map((delta) => ({ type: 'text-delta' as const, id: 't2', delta })),
    { type: 'text-end', id: 't2' },
    { type: 'finish', finishReason: { unified: 'stop', raw: undefined }, usage },
  ],
];

const user = (id: string, text: string): UIMessage => ({ id, role: 'user', parts: [{ type: 'text', text }] });


function untilAborted(gate: Promise<void>, signal: AbortSignal | undefined): Promise<void> {
  if (!signal) return gate;
  signal.throwIfAborted();
  return new Promise<void>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    void gate.then(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    });
  });
}

async function collect<T>(stream: AsyncIterable<T> | ReadableStream<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of stream as AsyncIterable<T>) out.push(x);
  return out;
}

type ParsedChunk = ReturnType<typeof parseJsonEventStream<UIMessageChunk>> extends ReadableStream<infer R> ? R : never;

/** useChat's state, without React. */
class MemoryChatState implements ChatState<UIMessage> {
  status: ChatStatus = 'ready';
  error: Error | undefined = undefined;
  constructor(public messages: UIMessage[]) {}
  pushMessage = (m: UIMessage) => void (this.messages = [...this.messages, m]);
  popMessage = () => void (this.messages = this.messages.slice(0, -1));
  replaceMessage = (i: number, m: UIMessage) => void (this.messages = this.messages.map((x, j) => (j === i ? m : x)));
  snapshot = <T,>(thing: T): T => structuredClone(thing);
}

/**
 * The app's routes as `fetch` for DefaultChatTransport: `GET /api/chat/{id}/stream` answered
 * by `route.store.resumeStream(id)`; with `route.cutAfter`, the response is cut after that many
 * SSE frames like a dropped connection.
 */
function appRoutes(route: { store: ChatStore; cutAfter?: number }): typeof fetch {
  return async (input) => {
    const url = new URL(String(input));
    const match = /^\/api\/chat\/([^/]+)\/stream$/.exec(url.pathname);
    if (!match?.[1]) return new Response(null, { status: 404 });
    const res = await route.store.resumeStream(decodeURIComponent(match[1]));
    const cutAfter = route.cutAfter;
    if (cutAfter === undefined || !res.body) return res;
    return new Response(cutStream(res.body, cutAfter), { status: res.status, headers: res.headers });
  };
}

function cutStream(body: ReadableStream<Uint8Array>, frames: number): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const encoder = new TextEncoder();
  let seen = 0;
  let buffer = '';
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { value, done } = await reader.read();
      if (done) return controller.close();
      buffer += decoder.decode(value, { stream: true });
      let at: number;
      while ((at = buffer.indexOf('\n\n')) >= 0) {
        const frame = buffer.slice(0, at + 2);
        buffer = buffer.slice(at + 2);
        controller.enqueue(encoder.encode(frame));
        if (frame.startsWith('data:') && ++seen >= frames) {
          await reader.cancel();
          return controller.error(new TypeError('network error: connection reset'));
        }
      }
    },
    cancel: (reason) => reader.cancel(reason),
  });
}

/** How many UI chunks the first `n` of these events become. */
function chunksOf(events: Array<{ type: string; data: unknown }>, n: number): number {
  const t = new UIMessageChunkTranslator('r');
  return events.slice(0, n).reduce((sum, e) => sum + t.push(e).length, 0);
}

const textOf = (m: UIMessage | undefined) =>
  (m?.parts ?? []).flatMap((p) => (p.type === 'text' ? [p.text] : [])).join('');

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * The SDK's own pieces, from the version under test: the reply it produces, its client-side
 * reader, its `Chat` and `DefaultChatTransport`. Without `sdk` (a version this Node cannot run)
 * the suites are skipped and these are never called.
 */
function sdkSide(sdk: Sdk | undefined) {
  const need = (): Sdk => {
    if (!sdk) throw new Error('this SDK version is not loaded on this Node');
    return sdk;
  };

  /**
   * The SDK's reply to `history` as a UI message stream, and the message the SDK itself
   * assembles from it (`onFinish`). `gate`, when given, holds the second model step back.
   */
  function sdkReply(history: UIMessage[], opts: { gate?: Promise<void>; abortSignal?: AbortSignal; onFinish?: (messages: UIMessage[]) => Promise<void> } = {}) {
    const { ai, test } = need();
    const weather = ai.tool({
      description: 'The weather in a city',
      inputSchema: z.object({ city: z.string() }),
      execute: async ({ city }) => ({ city, celsius: 21 }),
    });
    let step = 0;
    const model = new test.MockLanguageModelV3({
      doStream: async ({ abortSignal }) => {
        const parts = STEPS[step++] ?? [];
        // A provider's request: held back by the gate, abandoned when the call is aborted.
        if (step === 2 && opts.gate) await untilAborted(opts.gate, abortSignal);
        return { stream: test.simulateReadableStream<ModelPart>({ chunks: parts, initialDelayInMs: null, chunkDelayInMs: 2 }) };
      },
    });
    let produced!: (m: UIMessage) => void;
    const message = new Promise<UIMessage>((resolve) => (produced = resolve));
    const result = ai.streamText({
      model,
      prompt: 'What is the weather in Paris?',
      tools: { weather },
      stopWhen: ai.stepCountIs(2),
      abortSignal: opts.abortSignal,
    });
    const stream = result.toUIMessageStream({
      originalMessages: history,
      generateMessageId: () => `msg-${uniqueToken()}`,
      onFinish: async ({ responseMessage, messages }) => {
        await opts.onFinish?.(messages);
        produced(responseMessage);
      },
    });
    return { stream, message };
  }

  /** The SDK's client-side reader over a UI message stream response: the last message it assembled. */
  async function assemble(response: Response): Promise<UIMessage | undefined> {
    expect(response.status).toBe(200);
    expect(response.headers.get('x-vercel-ai-ui-message-stream')).toBe('v1');
    expect(response.headers.get('content-type')).toBe('text/event-stream');
    const { ai } = need();
    const chunks = ai.parseJsonEventStream({ stream: response.body!, schema: ai.uiMessageChunkSchema }).pipeThrough(
      new TransformStream<ParsedChunk, UIMessageChunk>({
        transform(parsed, controller) {
          if (!parsed.success) throw parsed.error;
          controller.enqueue(parsed.value);
        },
      }),
    );
    let last: UIMessage | undefined;
    for await (const message of ai.readUIMessageStream({ stream: chunks, terminateOnError: true })) last = message;
    return last;
  }

  /** A chat as `useChat` drives it, on the SDK's `AbstractChat`. */
  let TestChat: (new (id: string, messages: UIMessage[], transport: DefaultChatTransport<UIMessage>) => AbstractChat<UIMessage>) | undefined;
  const newChat = (id: string, messages: UIMessage[], transport: DefaultChatTransport<UIMessage>) => {
    const Base = need().ai.AbstractChat<UIMessage>;
    TestChat ??= class extends Base {
      constructor(id: string, messages: UIMessage[], transport: DefaultChatTransport<UIMessage>) {
        super({ id, transport, state: new MemoryChatState(messages) });
      }
    };
    return new TestChat(id, messages, transport);
  };

  const transportFor = (route: { store: ChatStore; cutAfter?: number }) =>
    new (need().ai.DefaultChatTransport)<UIMessage>({ api: 'http://app.test/api/chat', fetch: appRoutes(route) });

  const readUIMessageStream: Sdk['ai']['readUIMessageStream'] = (options) => need().ai.readUIMessageStream(options);

  return { sdkReply, assemble, newChat, transportFor, readUIMessageStream };
}

// --- Once per SDK version ----------------------------------------------------------------------

for (const { label, sdk, skip } of SDKS) {
  const versionSuite = `integrations/ai-sdk with ${label}`;
  describe.skipIf(skip !== undefined && !skipSuite(skip, versionSuite))(versionSuite, () => {
    const { sdkReply, assemble, newChat, transportFor, readUIMessageStream } = sdkSide(sdk);

    // --- HTTP client mode: two server processes --------------------------------------------------

    const httpSuite = `integrations/ai-sdk/http [${label}] (two servers, postgres+redis)`;
    describe.skipIf(!requireServices(['postgres', 'redis'], httpSuite))(httpSuite, { timeout: 120_000 }, () => {
      let db: FreshDatabase;
      const servers: ServerProcess[] = [];
      let clientA: AgentSessionsClient;
      let clientB: AgentSessionsClient;
      let storeA: ChatStore;
      let storeB: ChatStore;

      beforeAll(async () => {
        db = await freshDatabase();
        const env = {
          DATABASE_URL: db.url,
          REDIS_URL: serviceUrl('redis'),
          KEY_PREFIX: uniqueKeyPrefix(),
          ADMIN_API_KEY: ADMIN,
          SSE_HEARTBEAT_MS: '1000',
          AGENT_COMMAND: `"${process.execPath}" "${FIXTURE}"`,
        };
        servers.push(await startServer({ env: { ...env, INSTANCE_ID: 'A' }, timeoutMs: 90_000 }));
        servers.push(await startServer({ env: { ...env, INSTANCE_ID: 'B' }, timeoutMs: 90_000 }));
        [clientA, clientB] = servers.map((s) => new AgentSessionsClient({ baseUrl: s.url, apiKey: ADMIN })) as [AgentSessionsClient, AgentSessionsClient];
        storeA = createChatStore({ client: clientA });
        storeB = createChatStore({ client: clientB });
      }, 180_000);

      afterAll(async () => {
        await Promise.all(servers.map((s) => s.stop().catch(() => undefined)));
        await db?.drop();
      });

      const ended = (chatId: string, runId: string) =>
        until(`run ${runId} to end`, async () => {
          const run = await clientB.runs.get(chatId, runId);
          return ['completed', 'failed', 'interrupted'].includes(run.status) ? run : undefined;
        });

      it('a reply the SDK produced, run on A, cut mid-stream and resumed on B, assembles to the same message, once', async () => {
        const chatId = `chat-${uniqueToken()}`;
        const question = user('u1', 'What is the weather in Paris?');
        await storeA.saveMessages(chatId, [question]);

        // What the SDK streams for this reply, as the events a command agent prints.
        const reply = sdkReply([question]);
        const events = (await collect(reply.stream)).map(outputEventOfChunk);
        const produced = await reply.message;
        expect(produced.parts.filter((p) => p.type === 'text')).toHaveLength(2);
        expect(produced.parts.some((p) => p.type === 'tool-weather' && p.state === 'output-available')).toBe(true);
        const pauseAfter = Math.floor(events.length / 2);
        const cutAfter = chunksOf(events, pauseAfter) - 1;

        // Nothing runs yet: useChat({ resume: true }) on page load gets 204 and stays ready.
        expect((await storeB.resumeStream(chatId)).status).toBe(204);

        const run = await clientA.runs.start(chatId, { events, pause_after: pauseAfter, delay_ms: 2 });
        expect(run.owner).toBe('A');

        const route = { store: storeA, cutAfter } as { store: ChatStore; cutAfter?: number };
        const chat = newChat(chatId, await storeA.loadMessages(chatId), transportFor(route));
        await chat.resumeStream();
        // Cut: the chat holds the part it had, and knows it was a disconnect.
        expect(chat.status).toBe('error');
        expect(chat.error).toBeInstanceOf(TypeError);
        expect(chat.messages).toHaveLength(2);
        const partial = chat.messages[1];
        expect(partial?.id).toBe(produced.id);
        expect(partial?.parts.length).toBeLessThan(produced.parts.length);
        expect(textOf(produced).startsWith(textOf(partial))).toBe(true);

        // The run goes on (input from B reaches the agent on A); the chat resumes through B.
        await clientB.runs.sendInput(chatId, 'go');
        route.store = storeB;
        route.cutAfter = undefined;
        await chat.resumeStream();
        expect(chat.status).toBe('ready');
        expect(chat.messages).toEqual([question, produced]);

        // The SDK's stream reader over the replay of the ended run, from A.
        expect((await ended(chatId, run.id)).status).toBe('completed');
        expect(await assemble(await storeA.streamRun(chatId, run.id))).toEqual(produced);
        expect((await storeA.resumeStream(chatId)).status).toBe(204);
      });

      it('plain text, tool_call and tool_result events become the message they describe', async () => {
        const chatId = `chat-${uniqueToken()}`;
        await storeA.saveMessages(chatId, [user('u1', 'weather?')]);
        const events = [
          { type: 'text', data: { text: 'Checking' } },
          { type: 'text', data: { text: ' the weather.' } },
          { type: 'tool_call', data: { id: 'c1', name: 'weather', input: { city: 'Oslo' } } },
          { type: 'status', data: { state: 'thinking' } },
          { type: 'tool_result', data: { id: 'c1', result: { celsius: -3 } } },
          { type: 'text', data: { text: 'It is -3 °C.' } },
        ];
        const run = await clientA.runs.start(chatId, { events, pause_after: 3 });
        const response = await storeB.resumeStream(chatId);
        await clientA.runs.sendInput(chatId, 'go');
        const message = await assemble(response);
        expect(message).toEqual({
          id: run.id,
          role: 'assistant',
          parts: [
            { type: 'text', text: 'Checking the weather.', state: 'done' },
            { type: 'tool-weather', toolCallId: 'c1', state: 'output-available', input: { city: 'Oslo' }, output: { celsius: -3 } },
            { type: 'text', text: 'It is -3 °C.', state: 'done' },
          ],
        });
      });

      it('204 for a chat that does not exist; messages saved and loaded in order, a re-sent one replaced in place', async () => {
        const chatId = `V1StGXR8_Z5jdHi6B-myT${uniqueToken()}`.slice(0, 40);
        expect((await storeB.resumeStream(chatId)).status).toBe(204);
        expect(await storeB.loadMessages(chatId)).toEqual([]);

        const a1: UIMessage = { id: 'a1', role: 'assistant', parts: [{ type: 'text', text: 'Hel', state: 'streaming' }] };
        await storeA.saveMessages(chatId, [user('u1', 'hi'), a1]);
        const a1Done: UIMessage = { ...a1, parts: [{ type: 'text', text: 'Hello!', state: 'done' }, { type: 'step-start' }] };
        const u2 = user('u2', 'bye');
        // onFinish hands the whole array again, the reply with more parts.
        await storeB.saveMessages(chatId, [user('u1', 'hi'), a1Done, u2]);
        await storeB.saveMessages(chatId, [user('u1', 'hi'), a1Done, u2]);
        expect(await storeA.loadMessages(chatId)).toEqual([user('u1', 'hi'), a1Done, u2]);
        const items = (await clientA.items.list(chatId)).items;
        expect(items.map((i) => [i.seq, i.client_id, i.role, i.type])).toEqual([
          [1, 'u1', 'user', 'ui_message'],
          [2, 'a1', 'assistant', 'ui_message'],
          [3, 'u2', 'user', 'ui_message'],
        ]);
      });
    });

    // --- Library mode: two instances in this process ---------------------------------------------

    const librarySuite = `integrations/ai-sdk/library [${label}] (two instances, postgres+redis)`;
    describe.skipIf(!requireServices(['postgres', 'redis'], librarySuite))(librarySuite, { timeout: 60_000 }, () => {
      let db: FreshDatabase;
      let A: Sessions;
      let B: Sessions;
      let chatA: ChatStore;
      let chatB: ChatStore;

      beforeAll(async () => {
        db = await freshDatabase();
        const env = { DATABASE_URL: db.url, REDIS_URL: serviceUrl('redis'), KEY_PREFIX: uniqueKeyPrefix(), RUN_SWEEP_INTERVAL_MS: '0', LOG_LEVEL: 'silent' };
        A = await createSessions({ env: { ...env, INSTANCE_ID: 'A' } });
        B = await createSessions({ env: { ...env, INSTANCE_ID: 'B' } });
        chatA = createChatStore({ sessions: A });
        chatB = createChatStore({ sessions: B });
      }, 60_000);

      afterAll(async () => {
        await Promise.all([A?.close(), B?.close()]);
        await db?.drop();
      });

      /** POST /api/chat on instance A: save, start the reply as a run, answer its stream. */
      async function post(chatId: string, messages: UIMessage[], gate?: Promise<void>) {
        await chatA.saveMessages(chatId, messages);
        let reply!: ReturnType<typeof sdkReply>;
        const run = await A.runs.start(
          chatId,
          async (r) => {
            reply = sdkReply(messages, { gate, abortSignal: r.signal, onFinish: (all) => chatA.saveMessages(chatId, all) });
            await pipeUIMessageStreamToRun(r, reply.stream);
          },
          { ifBusy: 'interrupt' },
        );
        return { run, response: await chatA.streamRun(chatId, run.id), produced: () => reply.message };
      }

      it('pipeUIMessageStreamToRun: a reply on A resumed by a chat on B (cut and resumed again), saved by onFinish', async () => {
        const chatId = `lib-${uniqueToken()}`;
        const question = user('q1', 'What is the weather in Paris?');
        let open!: () => void;
        const gate = new Promise<void>((resolve) => (open = resolve));
        const { run, response } = await post(chatId, [question], gate);
        // The POST's own answer is the run's stream; the browser leaves (a reload).
        await response.body?.cancel();

        const route = { store: chatB, cutAfter: 3 } as { store: ChatStore; cutAfter?: number };
        const chat = newChat(chatId, await chatB.loadMessages(chatId), transportFor(route));
        await chat.resumeStream();
        expect(chat.status).toBe('error');
        expect(chat.messages.map((m) => m.role)).toEqual(['user', 'assistant']);

        route.cutAfter = undefined;
        const resumed = chat.resumeStream();
        open();
        await resumed;
        expect(chat.status).toBe('ready');
        const ended = await B.runs.wait(chatId, run.id);
        expect(ended.status).toBe('completed');
        const saved = await chatB.loadMessages(chatId);
        expect(saved).toHaveLength(2);
        expect(chat.messages).toEqual(saved);
        expect(saved[1]?.parts.filter((p) => p.type === 'text').map((p) => (p as { text: string }).text)).toEqual([
          'Let me check the weather.',
          'It is 21 °C in Paris.',
        ]);
        // The events on the session's stream are the conventional ones for the text and the tool.
        const types = new Set<string>();
        for await (const e of B.runs.stream(chatId, { after: (ended.startSeq ?? 1) - 1 })) types.add(e.type);
        expect([...types]).toEqual(expect.arrayContaining(['status', 'start', 'text-start', 'text', 'text-end', 'tool_call', 'tool_result', 'finish', 'done']));
        expect((await chatB.resumeStream(chatId)).status).toBe(204);
      });

      it('the reply assembled from B equals the one the SDK produced on A', async () => {
        const chatId = `lib-${uniqueToken()}`;
        const { run, response, produced } = await post(chatId, [user('q1', 'weather?')]);
        const [fromA, fromB] = await Promise.all([assemble(response), assemble(await chatB.streamRun(chatId, run.id))]);
        expect(fromA).toEqual(await produced());
        expect(fromB).toEqual(await produced());
      });

      it('a reply started while another runs (ifBusy interrupt) streams once it starts, with none of the other reply', async () => {
        const chatId = `lib-${uniqueToken()}`;
        const first = await post(chatId, [user('q1', 'weather?')], new Promise<void>(() => undefined));
        // The first reply streams its first step (the text, the tool) and waits at the gate before
        // the second interrupts it; an interrupt during that step would cut the text short.
        for await (const e of A.runs.stream(chatId, { after: (first.run.startSeq ?? 1) - 1 })) if (e.type === 'tool_result') break;
        const second = await post(chatId, [user('q1', 'weather?'), user('q2', 'and now?')]);
        expect(second.run.status).toBe('queued');
        const [one, two] = await Promise.all([assemble(first.response), assemble(second.response)]);
        expect((await B.runs.wait(chatId, first.run.id)).status).toBe('interrupted');
        expect(textOf(one)).toBe('Let me check the weather.');
        expect(two).toEqual(await second.produced());
        expect(two?.id).not.toBe(one?.id);
      });

      it('saveMessages with replace drops a regenerated reply; without it nothing is removed', async () => {
        const chatId = `lib-${uniqueToken()}`;
        const a = (id: string, text: string): UIMessage => ({ id, role: 'assistant', parts: [{ type: 'text', text }] });
        await chatA.saveMessages(chatId, [user('u1', 'hi'), a('a1', 'first'), user('u2', 'more'), a('a2', 'second')]);
        // An incremental save (just the new message) keeps everything.
        await chatB.saveMessages(chatId, [user('u3', 'again')]);
        expect((await chatA.loadMessages(chatId)).map((m) => m.id)).toEqual(['u1', 'a1', 'u2', 'a2', 'u3']);
        // Regenerate a1: the SDK drops everything after u1 and hands [u1, a1'].
        await chatB.saveMessages(chatId, [user('u1', 'hi'), a('a1b', 'better')], { replace: true });
        expect(await chatA.loadMessages(chatId)).toEqual([user('u1', 'hi'), a('a1b', 'better')]);
      });

      it('an interrupt from B (the stop endpoint) stops the model call on A; the stream ends with abort', async () => {
        const chatId = `lib-${uniqueToken()}`;
        const never = new Promise<void>(() => undefined);
        const { run, response } = await post(chatId, [user('q1', 'weather?')], never);
        const reading = assemble(response);
        // Step 1 is out (its tool result on the stream, read on B); step 2 waits on the model.
        for await (const e of B.runs.stream(chatId, { after: (run.startSeq ?? 1) - 1 })) if (e.type === 'tool_result') break;
        await B.runs.interrupt(chatId);
        const ended = await B.runs.wait(chatId, run.id);
        expect(ended.status).toBe('interrupted');
        const message = await reading;
        expect(textOf(message)).toBe('Let me check the weather.');
        const types: string[] = [];
        for await (const e of B.runs.stream(chatId, { after: (run.startSeq ?? 1) - 1 })) types.push(e.type);
        expect(types.slice(-2)).toEqual(['abort', 'done']);
        // onFinish saved what was said before the stop.
        const saved = await chatB.loadMessages(chatId);
        expect(saved.map((m) => m.id)).toEqual(['q1', message?.id]);
        expect(textOf(saved[1])).toBe('Let me check the weather.');
      });
    });

    // --- The translation alone ----------------------------------------------------------------------

    describe(`integrations/ai-sdk/UIMessageChunkTranslator [${label}]`, () => {
      const translate = (events: Array<{ type: string; data?: unknown }>, runId = 'run1') => {
        const t = new UIMessageChunkTranslator(runId);
        return events.flatMap((e) => t.push({ type: e.type, data: e.data }));
      };
      const assembleChunks = async (chunks: UIMessageChunk[]) => {
        let last: UIMessage | undefined;
        const errors: unknown[] = [];
        const stream = new ReadableStream<UIMessageChunk>({
          start(c) {
            for (const chunk of chunks) c.enqueue(chunk);
            c.close();
          },
        });
        for await (const m of readUIMessageStream({ stream, onError: (e) => errors.push(e) })) last = m;
        return { message: last, errors };
      };

      it('starts the message with the run id, closes a plain text part at the next event, ends with finish', () => {
        expect(translate([{ type: 'status', data: { state: 'running' } }, { type: 'text', data: 'a' }, { type: 'text', data: { text: 'b' } }, { type: 'tool_call', data: { name: 'x' } }, { type: 'done', data: { status: 'completed' } }])).toEqual([
          { type: 'start', messageId: 'run1' },
          { type: 'text-start', id: 'run1-text-0' },
          { type: 'text-delta', id: 'run1-text-0', delta: 'a' },
          { type: 'text-delta', id: 'run1-text-0', delta: 'b' },
          { type: 'text-end', id: 'run1-text-0' },
          { type: 'tool-input-available', toolCallId: 'run1-call-0', toolName: 'x', input: {} },
          { type: 'finish' },
        ]);
      });

      it('an interrupted run ends with abort; a failed one with an error that does not show the server error', async () => {
        expect(translate([{ type: 'text', data: 'a' }, { type: 'done', data: { status: 'interrupted', reason: 'interrupted' } }]).at(-1)).toEqual({ type: 'abort', reason: 'interrupted' });
        const failed = translate([{ type: 'text', data: 'a' }, { type: 'error', data: { status: 'failed', reason: 'runner_error', error: 'secret stack' } }]);
        expect(failed.slice(-2)).toEqual([{ type: 'text-end', id: 'run1-text-0' }, { type: 'error', errorText: 'The run failed (runner_error).' }]);
        const { message, errors } = await assembleChunks(failed);
        expect(textOf(message)).toBe('a');
        expect(errors).toEqual([new Error('The run failed (runner_error).')]);
      });

      it('skips a result for a call it never saw (the SDK would refuse the stream), and what it does not know', async () => {
        const chunks = translate([
          { type: 'tool_result', data: { id: 'nope', output: 1 } },
          { type: 'input', data: 'x' },
          { type: 'tool_call', data: { id: 'c1', name: 'calc', input: { a: 1 } } },
          { type: 'tool_result', data: { errorText: 'division by zero' } },
          { type: 'done', data: { status: 'completed' } },
        ]);
        const { message, errors } = await assembleChunks(chunks);
        expect(errors).toEqual([]);
        expect(message?.parts).toEqual([{ type: 'tool-calc', toolCallId: 'c1', state: 'output-error', input: { a: 1 }, errorText: 'division by zero' }]);
      });

      it('passes chunk-typed events through and maps the SDK error chunk back from agent_error', () => {
        const sdk: UIMessageChunk[] = [
          { type: 'start', messageId: 'm1' },
          { type: 'reasoning-start', id: 'r' },
          { type: 'reasoning-delta', id: 'r', delta: 'hmm' },
          { type: 'reasoning-end', id: 'r' },
          { type: 'data-weather', id: 'd1', data: { celsius: 3 } },
          { type: 'error', errorText: 'An error occurred.' },
          { type: 'finish', finishReason: 'stop' },
        ];
        expect(translate([...sdk.map(outputEventOfChunk), { type: 'done', data: { status: 'completed' } }])).toEqual(sdk);
      });
    });
  });
}
