/**
 * `agent-sessions/openai-agents` with the real `@openai/agents`: its `Runner` and a scripted
 * `Model` (no network, tracing off).
 *
 * - http: two `agent-sessions serve` processes A and B on one PostgreSQL database and one
 *   Redis prefix, reached through the HTTP client. A conversation's first turn (a tool call
 *   and its result) runs against A, the second against B with new objects, and B's model is
 *   sent the first turn whole; a third, streamed, turn on A again. The stored items carry
 *   the SDK's items whole, their role and type (so `last_turns` finds the turns) and no
 *   client_id, although the model gave every item the same placeholder id. getItems, popItem
 *   and clearSession answer what the SDK's own MemorySession answers for the same calls; two
 *   instances appending at once keep one order with every item once; the session is created
 *   on first use, with the fields given, and again if it was purged meanwhile (not when it
 *   ended).
 * - library: the same over `{ sessions }` (embedded, in memory), tenants kept apart.
 *
 * `@openai/agents` declares Node 22 (through `openai` 7) and runs on Node 20 too, as long as
 * nothing calls OpenAI: should it stop loading there, these suites are skipped by name on a
 * Node older than 22 (and fail on 22 and later).
 */
import type { AgentInputItem, AgentOutputItem, Model, ModelRequest, ModelResponse, Session, StreamEvent } from '@openai/agents';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentSessionsClient } from '../../src/client/index.js';
import { createSessions, type Sessions } from '../../src/index.js';
import { AgentSessionsSession } from '../../src/integrations/openai-agents.js';
import { freshDatabase, requireServices, serviceUrl, skipSuite, uniqueKeyPrefix, uniqueToken, type FreshDatabase } from '../setup/harness.js';
import { startServer, type ServerProcess } from '../setup/server-process.js';

type AgentsSdk = typeof import('@openai/agents');
type ResponseDone = Extract<StreamEvent, { type: 'response_done' }>;

const NODE_MAJOR = Number(process.versions.node.split('.')[0]);
const loaded: AgentsSdk | Error = await import('@openai/agents').catch((err: unknown) => {
  if (NODE_MAJOR >= 22) throw err;
  return err instanceof Error ? err : new Error(String(err));
});

function sdkReady(suite: string): boolean {
  if (!(loaded instanceof Error)) return true;
  return skipSuite(`@openai/agents does not load on Node ${process.version} (it needs Node 22 through openai 7): ${loaded.message}`, suite);
}

/** The SDK, inside a suite that runs only when it loaded. */
function sdk(): AgentsSdk {
  if (loaded instanceof Error) throw loaded;
  return loaded;
}

/** What the Agents SDK's Chat Completions model sets as the id of every item it makes. */
const PLACEHOLDER_ID = '__fake_id__';

const say = (text: string): AgentOutputItem => ({
  type: 'message',
  role: 'assistant',
  status: 'completed',
  id: PLACEHOLDER_ID,
  content: [{ type: 'output_text', text }],
});

const callWeather = (callId: string, city: string): AgentOutputItem => ({
  type: 'function_call',
  id: PLACEHOLDER_ID,
  callId,
  name: 'get_weather',
  status: 'completed',
  arguments: JSON.stringify({ city }),
});

/**
 * A Model that answers each call with the next scripted output (a call past the script
 * fails) and records the input it was sent; streamed calls get the same output as a
 * response_started, text deltas and response_done.
 */
class ScriptedModel implements Model {
  /** What each call was sent, in order. */
  readonly inputs: AgentInputItem[][] = [];
  readonly #steps: AgentOutputItem[][];

  constructor(steps: AgentOutputItem[][]) {
    this.#steps = [...steps];
  }

  async getResponse(request: ModelRequest): Promise<ModelResponse> {
    const output = this.#next(request);
    return { usage: new (sdk().Usage)({ requests: 1, inputTokens: 10, outputTokens: 5, totalTokens: 15 }), output, responseId: `resp_${this.inputs.length}` };
  }

  async *getStreamedResponse(request: ModelRequest): AsyncIterable<StreamEvent> {
    const output = this.#next(request);
    yield { type: 'response_started' };
    for (const item of output) {
      if (item.type !== 'message' || item.role !== 'assistant') continue;
      for (const part of item.content) if (part.type === 'output_text') yield { type: 'output_text_delta', delta: part.text };
    }
    yield {
      type: 'response_done',
      response: { id: `resp_${this.inputs.length}`, usage: { requests: 1, inputTokens: 10, outputTokens: 5, totalTokens: 15 }, output: output as ResponseDone['response']['output'] },
    };
  }

  /** Every scripted output was asked for. */
  get done(): boolean {
    return this.#steps.length === 0;
  }

  #next(request: ModelRequest): AgentOutputItem[] {
    const input = typeof request.input === 'string' ? [{ role: 'user' as const, content: request.input }] : request.input;
    this.inputs.push(JSON.parse(JSON.stringify(input)) as AgentInputItem[]);
    const output = this.#steps.shift();
    if (!output) throw new Error(`the model was called ${this.inputs.length} times; the script has no more answers`);
    return output;
  }
}

/** An agent with one function tool, `get_weather`, on `model`. */
function forecaster(model: Model) {
  const { Agent, tool } = sdk();
  const getWeather = tool({
    name: 'get_weather',
    description: 'The weather in a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'], additionalProperties: false },
    strict: true,
    execute: async (input) => `sunny in ${(input as { city: string }).city}`,
  });
  return new Agent({ name: 'Forecaster', instructions: 'Answer questions about the weather.', model, tools: [getWeather] });
}

const runner = () => new (sdk().Runner)({ tracingDisabled: true });

/** A user message as the SDK stores one given as a string. */
const userMessage = (text: string): AgentInputItem => ({ type: 'message', role: 'user', content: text });

/** The turn of a conversation that asks about `city`: the question, the tool call and result, the answer. */
const weatherTurn = (callId: string, city: string, answer: string) => [
  userMessage(`Weather in ${city}?`),
  { type: 'function_call', callId, name: 'get_weather', arguments: JSON.stringify({ city }) },
  { type: 'function_call_result', callId, name: 'get_weather', output: { type: 'text', text: `sunny in ${city}` } },
  { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: answer }] },
];

/** Items of every kind the history holds, each different, with no undefined member (JSON drops those). */
function sampleItems(n: number, tag: string): AgentInputItem[] {
  return Array.from({ length: n }, (_, i): AgentInputItem => {
    switch (i % 4) {
      case 0:
        return { type: 'message', role: 'user', content: `${tag} question ${i}` };
      case 1:
        return { type: 'function_call', callId: `${tag}_${i}`, name: 'get_weather', arguments: `{"city":"c${i}"}`, status: 'completed' };
      case 2:
        return { type: 'function_call_result', callId: `${tag}_${i - 1}`, name: 'get_weather', status: 'completed', output: { type: 'text', text: `r${i}` } };
      default:
        return { type: 'message', role: 'assistant', status: 'completed', content: [{ type: 'output_text', text: `${tag} answer ${i}` }] };
    }
  });
}

/**
 * Runs the same calls on `ours` and on the SDK's MemorySession (its reference
 * implementation) and expects the same answers: getItems with and without limits, popItem
 * down to an empty history and past it, clearSession.
 */
async function expectSameAsMemorySession(ours: Session): Promise<void> {
  const reference = new (sdk().MemorySession)();
  const both = async <T>(call: (s: Session) => Promise<T>): Promise<T> => {
    const [a, b] = await Promise.all([call(ours), call(reference)]);
    expect(a).toEqual(b);
    return a;
  };
  expect(await both((s) => s.getItems())).toEqual([]);
  expect(await both((s) => s.popItem())).toBeUndefined();
  const items = sampleItems(11, 'm');
  await both((s) => s.addItems(items.slice(0, 7)));
  await both((s) => s.addItems([]));
  await both((s) => s.addItems(items.slice(7)));
  expect(await both((s) => s.getItems())).toHaveLength(11);
  for (const limit of [1, 2, 3, 4, 5, 10, 11, 12, 100]) expect(await both((s) => s.getItems(limit))).toHaveLength(Math.min(limit, 11));
  expect(await both((s) => s.getItems(0))).toEqual([]);
  expect(await both((s) => s.getItems(-1))).toEqual([]);
  expect(await both((s) => s.popItem())).toEqual(items[10]);
  expect(await both((s) => s.popItem())).toEqual(items[9]);
  expect(await both((s) => s.getItems(3))).toEqual(items.slice(6, 9));
  for (let i = 8; i >= 0; i--) await both((s) => s.popItem());
  expect(await both((s) => s.popItem())).toBeUndefined();
  await both((s) => s.addItems(items.slice(0, 3)));
  await both((s) => s.clearSession());
  expect(await both((s) => s.getItems())).toEqual([]);
  await both((s) => s.addItems(items.slice(3, 5)));
  expect(await both((s) => s.getItems())).toEqual(items.slice(3, 5));
}

/** Two instances of the adapter on one new id, appending batches at once. */
async function expectOneOrder(a: Session, b: Session, read: () => Promise<AgentInputItem[]>): Promise<void> {
  const BATCHES = 15;
  const write = async (who: string, session: Session) => {
    for (let k = 0; k < BATCHES; k++) {
      await session.addItems([userMessage(`${who} ${k} question`), { type: 'message', role: 'assistant', status: 'completed', content: [{ type: 'output_text', text: `${who} ${k} answer` }] }]);
    }
  };
  // Both start on the id at once: their lazy get-or-create races too.
  await Promise.all([write('A', a), write('B', b)]);
  const text = (i: AgentInputItem) => {
    const content = (i as { content: unknown }).content;
    return typeof content === 'string' ? content : (content as { text: string }[])[0]?.text;
  };
  const [fromA, fromB, stored] = await Promise.all([a.getItems(), b.getItems(), read()]);
  expect(fromB).toEqual(fromA);
  expect(stored).toEqual(fromA);
  const texts = fromA.map(text);
  expect(texts).toHaveLength(4 * BATCHES);
  expect(new Set(texts).size).toBe(4 * BATCHES);
  for (const who of ['A', 'B']) {
    // Each writer's batches in the order it made them, each batch's two items side by side.
    const mine = texts.map((t, at) => ({ t, at })).filter(({ t }) => t?.startsWith(`${who} `));
    expect(mine.map(({ t }) => t)).toEqual(Array.from({ length: BATCHES }, (_, k) => [`${who} ${k} question`, `${who} ${k} answer`]).flat());
    for (let k = 0; k < BATCHES; k++) expect(mine[2 * k + 1]?.at).toBe((mine[2 * k]?.at ?? NaN) + 1);
  }
}

const HTTP_SUITE = 'integrations/openai-agents/http (postgres+redis, two servers)';
const httpReady = sdkReady(HTTP_SUITE) && requireServices(['postgres', 'redis'], HTTP_SUITE);

describe.skipIf(!httpReady)(HTTP_SUITE, () => {
  const ADMIN = `oai-admin-${uniqueToken()}`;
  let db: FreshDatabase | null = null;
  const servers: ServerProcess[] = [];
  let A: AgentSessionsClient;
  let B: AgentSessionsClient;

  beforeAll(async () => {
    db = await freshDatabase();
    const env = { DATABASE_URL: db.url, REDIS_URL: serviceUrl('redis'), KEY_PREFIX: uniqueKeyPrefix(), ADMIN_API_KEY: ADMIN };
    // The first start migrates; the second then finds the schema in place.
    servers.push(await startServer({ env: { ...env, INSTANCE_ID: 'A' }, timeoutMs: 90_000 }));
    servers.push(await startServer({ env: { ...env, INSTANCE_ID: 'B' }, timeoutMs: 90_000 }));
    [A, B] = servers.map((s) => new AgentSessionsClient({ baseUrl: s.url, apiKey: ADMIN })) as [AgentSessionsClient, AgentSessionsClient];
  });

  afterAll(async () => {
    await Promise.all(servers.map((s) => s.stop().catch(() => undefined)));
    await db?.drop();
  });

  it("a conversation's second turn, on the other server, is sent the first turn whole (tool call and result included); a third, streamed, turn too", async () => {
    const id = `conv_${uniqueToken()}`;
    // Turn 1, through A: the model calls get_weather, then answers with what it returned.
    const model1 = new ScriptedModel([[callWeather('call_paris', 'Paris')], [say('Sunny in Paris.')]]);
    const onA = new AgentSessionsSession({ client: A, sessionId: id });
    const first = await runner().run(forecaster(model1), 'Weather in Paris?', { session: onA });
    expect(first.finalOutput).toBe('Sunny in Paris.');
    expect(model1.done).toBe(true);
    // The model's second call was sent the tool's result.
    expect(model1.inputs[1]).toMatchObject(weatherTurn('call_paris', 'Paris', '').slice(0, 3));

    // Turn 2, through B (another process): new objects, nothing shared but the id.
    const model2 = new ScriptedModel([[say('You asked about Paris.')]]);
    const onB = new AgentSessionsSession({ client: B, sessionId: id });
    const second = await runner().run(forecaster(model2), 'What did I ask?', { session: onB });
    expect(second.finalOutput).toBe('You asked about Paris.');
    expect(model2.inputs).toHaveLength(1);
    expect(model2.inputs[0]).toMatchObject([...weatherTurn('call_paris', 'Paris', 'Sunny in Paris.'), userMessage('What did I ask?')]);

    // Turn 3, streamed, through A again: sent turns 1 and 2.
    const model3 = new ScriptedModel([[callWeather('call_rome', 'Rome')], [say('Sunny in Rome too.')]]);
    const streamed = await runner().run(forecaster(model3), 'Weather in Rome?', { session: new AgentSessionsSession({ client: A, sessionId: id }), stream: true });
    let text = '';
    for await (const chunk of streamed.toTextStream()) text += chunk;
    await streamed.completed;
    expect(text).toBe('Sunny in Rome too.');
    const turn2 = [userMessage('What did I ask?'), { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'You asked about Paris.' }] }];
    expect(model3.inputs[0]).toMatchObject([...weatherTurn('call_paris', 'Paris', 'Sunny in Paris.'), ...turn2, userMessage('Weather in Rome?')]);

    // What is stored: the SDK's items whole, role from messages, type from every item, no
    // client_id although three items carried the same placeholder id (none replaced another).
    const all = [...weatherTurn('call_paris', 'Paris', 'Sunny in Paris.'), ...turn2, ...weatherTurn('call_rome', 'Rome', 'Sunny in Rome too.')];
    const stored = (await B.items.list(id, { limit: 100 })).items;
    expect(stored.map((i) => i.content)).toMatchObject(all);
    expect(stored.map((i) => [i.role, i.type, i.client_id])).toEqual(
      all.map((i) => [(i as { role?: string }).role ?? null, i.type, null]),
    );
    expect(stored.filter((i) => (i.content as { id?: string }).id === PLACEHOLDER_ID).length).toBeGreaterThanOrEqual(3);
    expect(await onB.getItems()).toEqual(stored.map((i) => i.content));
    // Turns start at user messages, so the server's last_turns reads them.
    expect((await A.items.list(id, { last_turns: 1 })).items.map((i) => i.content)).toMatchObject(weatherTurn('call_rome', 'Rome', 'Sunny in Rome too.'));
    expect((await A.items.list(id, { last_turns: 2 })).items).toHaveLength(6);
  });

  it('getItems, popItem and clearSession answer what the SDK’s MemorySession answers (pages of 3 over HTTP)', async () => {
    await expectSameAsMemorySession(new AgentSessionsSession({ client: A, sessionId: `conv_${uniqueToken()}`, pageSize: 3 }));
  });

  it('an item added through one server is popped through the other; clearSession keeps the session', async () => {
    const id = `conv_${uniqueToken()}`;
    const onA = new AgentSessionsSession({ client: A, sessionId: id });
    const onB = new AgentSessionsSession({ client: B, sessionId: id });
    const items = sampleItems(4, 'p');
    await onA.addItems(items);
    expect(await onB.popItem()).toEqual(items[3]);
    expect(await onA.getItems()).toEqual(items.slice(0, 3));
    await onB.clearSession();
    expect(await onA.getItems()).toEqual([]);
    expect(await onA.popItem()).toBeUndefined();
    expect((await A.get(id)).id).toBe(id);
  });

  it('two instances appending at once keep one order, every item once', async () => {
    const id = `conv_${uniqueToken()}`;
    await expectOneOrder(new AgentSessionsSession({ client: A, sessionId: id }), new AgentSessionsSession({ client: B, sessionId: id }), async () => {
      const items: AgentInputItem[] = [];
      for await (const i of A.items.iterate(id, { limit: 100 })) items.push(i.content as AgentInputItem);
      return items;
    });
  });

  it('creates the session on first use with the fields given, and again after a purge; an ended one is not revived', async () => {
    const id = `conv_${uniqueToken()}`;
    const session = new AgentSessionsSession({ client: A, sessionId: id, createWith: { user_id: 'alice', metadata: { app: 'forecaster' } } });
    await expect(B.get(id)).rejects.toMatchObject({ status: 404 });
    expect(await session.getSessionId()).toBe(id);
    expect(await B.get(id)).toMatchObject({ id, user_id: 'alice', metadata: { app: 'forecaster' } });
    await session.addItems(sampleItems(2, 'x'));
    await B.purge(id);
    const after = sampleItems(1, 'y');
    await session.addItems(after);
    expect(await session.getItems()).toEqual(after);
    expect(await B.get(id)).toMatchObject({ id, user_id: 'alice' });
    // An ended session is not revived.
    await B.terminate(id);
    await expect(session.addItems(sampleItems(1, 'z'))).rejects.toMatchObject({ code: 'session_ended' });
    expect(await session.getItems()).toEqual(after);
  });
});

const LIBRARY_SUITE = 'integrations/openai-agents/library (embedded)';

describe.skipIf(!sdkReady(LIBRARY_SUITE))(LIBRARY_SUITE, () => {
  let sessions: Sessions;

  beforeAll(async () => {
    sessions = await createSessions({ dataDir: ':memory:', env: {} });
  });

  afterAll(async () => {
    await sessions?.close();
  });

  it('holds a conversation with a tool call over two objects of one tenant, apart from the same id in another', async () => {
    const id = 'conv_shared_name';
    const model1 = new ScriptedModel([[callWeather('call_oslo', 'Oslo')], [say('Sunny in Oslo.')]]);
    const acme = new AgentSessionsSession({ sessions, sessionId: id, tenant: 'acme', createWith: { userId: 'alice' } });
    expect((await runner().run(forecaster(model1), 'Weather in Oslo?', { session: acme })).finalOutput).toBe('Sunny in Oslo.');

    const model2 = new ScriptedModel([[say('Oslo.')]]);
    const acmeAgain = new AgentSessionsSession({ sessions, sessionId: id, tenant: 'acme' });
    expect((await runner().run(forecaster(model2), 'Which city?', { session: acmeAgain })).finalOutput).toBe('Oslo.');
    expect(model2.inputs[0]).toMatchObject([...weatherTurn('call_oslo', 'Oslo', 'Sunny in Oslo.'), userMessage('Which city?')]);

    // The same id in another tenant is another session; the default tenant has none.
    const model3 = new ScriptedModel([[say('Hello.')]]);
    const globex = new AgentSessionsSession({ sessions, sessionId: id, tenant: 'globex' });
    await runner().run(forecaster(model3), 'Hi', { session: globex });
    expect(model3.inputs[0]).toMatchObject([userMessage('Hi')]);
    expect(await globex.getItems()).toHaveLength(2);
    expect(await acme.getItems()).toHaveLength(6);
    expect(await sessions.find(id)).toBeNull();
    expect(await sessions.get(id, { tenant: 'acme' })).toMatchObject({ userId: 'alice', tenantId: 'acme' });
    const stored = (await sessions.items.list(id, { limit: 100 }, { tenant: 'acme' })).items;
    expect(stored.map((i) => [i.role, i.type, i.clientId])).toEqual([
      ['user', 'message', null],
      [null, 'function_call', null],
      [null, 'function_call_result', null],
      ['assistant', 'message', null],
      ['user', 'message', null],
      ['assistant', 'message', null],
    ]);
  });

  it('getItems, popItem and clearSession answer what the SDK’s MemorySession answers (pages of 2)', async () => {
    await expectSameAsMemorySession(new AgentSessionsSession({ sessions, sessionId: 'conv_reference', tenant: 'acme', pageSize: 2 }));
  });

  it('two instances appending at once keep one order, every item once', async () => {
    const id = `conv_${uniqueToken()}`;
    await expectOneOrder(new AgentSessionsSession({ sessions, sessionId: id }), new AgentSessionsSession({ sessions, sessionId: id }), async () => {
      return (await sessions.items.list(id, { limit: 100 })).items.map((i) => i.content as AgentInputItem);
    });
  });

  it('stores raw bytes (Uint8Array, Buffer) as base64, which the SDK takes for the same data', async () => {
    const id = `bytes_${uniqueToken()}`;
    const bytes = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0xff, 0x00]);
    const item = (data: unknown) =>
      ({
        type: 'function_call_result',
        callId: 'call_img',
        name: 'camera',
        status: 'completed',
        output: { type: 'image', image: { data, mediaType: 'image/png' } },
      }) as AgentInputItem;
    await new AgentSessionsSession({ sessions, sessionId: id }).addItems([item(bytes), item(Buffer.from(bytes))]);
    const base64 = Buffer.from(bytes).toString('base64');
    expect(await new AgentSessionsSession({ sessions, sessionId: id }).getItems()).toEqual([item(base64), item(base64)]);
  });

  it('refuses a page size that is not a positive integer', () => {
    expect(() => new AgentSessionsSession({ sessions, sessionId: 'x', pageSize: 0 })).toThrow(RangeError);
  });
});
