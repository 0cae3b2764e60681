/**
 * The Claude Agent SDK example (examples/claude-agent-sdk), everything but the model call: a
 * scripted stand-in for the SDK's `query` plays the messages the SDK yields and calls the
 * `sessionStore` the way the SDK does, on two instances sharing PostgreSQL and Redis.
 * - the SDK's session id is stored in the session and passed as `resume` on the next turn,
 *   which runs on the other instance and loads the transcript the first one mirrored;
 * - SDK messages become `text`, `tool_call`, `tool_result` and `result` events, read on the
 *   other instance;
 * - an interrupt from the other instance reaches `query.interrupt()`, and aborts a query that
 *   does not end its turn after the grace period.
 * The types are the real package's (`npm run typecheck` checks agent.ts against it too).
 */
import { randomUUID } from 'node:crypto';
import type { Options, SDKMessage, SDKUserMessage, SessionStoreEntry } from '@anthropic-ai/claude-agent-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CLAUDE_SESSION_ID,
  ClaudeEventMapper,
  claudeRunner,
  transcriptStore,
  TRANSCRIPT_ITEM_TYPE,
  type QueryFunction,
} from '../../examples/claude-agent-sdk/claude-runner.js';
import type { OutputEvent, Sessions } from '../../src/index.js';
import { collect, MODES, modeReady, uniqueToken, waitFor } from '../runs/support.js';

// --- A scripted stand-in for `query` ----------------------------------------------------------

interface ScriptedCall {
  options: Options;
  /** The text of the prompt's first user message. */
  prompt: string | null;
  /** What the script loaded from the session store (turns that resume). */
  loaded: SessionStoreEntry[] | null;
  interrupts: number;
  /** Resolves when `interrupt()` is called. */
  interrupted: Promise<void>;
  /** Resolves when the runner's abortController aborts. */
  aborted: Promise<void>;
  /** Whether the prompt iterable ended (the SDK then closes the CLI's stdin). */
  inputClosed: boolean;
}

type Script = (call: ScriptedCall) => AsyncIterable<SDKMessage>;

/** The SDK's `query` with a script per call, in order; records what each call was given. */
function scriptedQuery(scripts: Script[]): { query: QueryFunction; calls: ScriptedCall[] } {
  const calls: ScriptedCall[] = [];
  const query: QueryFunction = ({ prompt, options }) => {
    const next = scripts.shift();
    if (!next) throw new Error('query called more often than scripted');
    const script: Script = next;
    const controller = options.abortController;
    if (!controller) throw new Error('the runner passes no abortController');
    const signal: AbortSignal = controller.signal;
    let onInterrupt!: () => void;
    const call: ScriptedCall = {
      options,
      prompt: null,
      loaded: null,
      interrupts: 0,
      interrupted: new Promise<void>((resolve) => (onInterrupt = resolve)),
      aborted: new Promise<void>((resolve) => (signal.aborted ? resolve() : signal.addEventListener('abort', () => resolve(), { once: true }))),
      inputClosed: false,
    };
    calls.push(call);
    async function* play(): AsyncGenerator<SDKMessage, void> {
      const input = prompt[Symbol.asyncIterator]();
      const first = await input.next();
      call.prompt = first.done ? null : textOf(first.value);
      void (async () => {
        while (!(await input.next()).done);
        call.inputClosed = true;
      })();
      for await (const message of script(call)) {
        // As the SDK does: an abort ends the iteration with an error.
        if (signal.aborted) throw Object.assign(new Error('Claude Code process aborted by user'), { name: 'AbortError' });
        yield message;
      }
    }
    return Object.assign(play(), {
      interrupt: async () => {
        call.interrupts++;
        onInterrupt();
        return undefined;
      },
    });
  };
  return { query, calls };
}

function textOf(message: SDKUserMessage): string {
  const content = message.message.content;
  return typeof content === 'string' ? content : JSON.stringify(content);
}

// --- SDK messages, as the SDK yields them (only the fields the runner reads, plus ids) ---------

const sdk = (m: Record<string, unknown>) => ({ uuid: randomUUID(), ...m }) as unknown as SDKMessage;
const init = (sid: string) => sdk({ type: 'system', subtype: 'init', session_id: sid, cwd: '/srv', tools: [] });
const messageStart = (sid: string, id: string) =>
  sdk({ type: 'stream_event', parent_tool_use_id: null, session_id: sid, event: { type: 'message_start', message: { id } } });
const textDelta = (sid: string, text: string) =>
  sdk({ type: 'stream_event', parent_tool_use_id: null, session_id: sid, event: { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text } } });
const assistant = (sid: string, id: string, content: unknown[], parent: string | null = null) =>
  sdk({ type: 'assistant', parent_tool_use_id: parent, session_id: sid, message: { id, role: 'assistant', content } });
const toolResult = (sid: string, toolUseId: string, content: unknown, parent: string | null = null) =>
  sdk({ type: 'user', parent_tool_use_id: parent, session_id: sid, message: { role: 'user', content: [{ type: 'tool_result', tool_use_id: toolUseId, content }] } });
const result = (sid: string, subtype = 'success', errors: string[] = []) =>
  sdk({
    type: 'result',
    subtype,
    is_error: subtype !== 'success',
    num_turns: 2,
    duration_ms: 12,
    duration_api_ms: 10,
    total_cost_usd: 0.0123,
    usage: { input_tokens: 30, output_tokens: 12 },
    result: 'done',
    errors,
    session_id: sid,
  });

/** A transcript line as the SDK mirrors it (the JSONL format, opaque to the store). */
const line = (sid: string, type: string, extra: Record<string, unknown> = {}): SessionStoreEntry => ({
  type,
  uuid: randomUUID(),
  sessionId: sid,
  timestamp: new Date().toISOString(),
  ...extra,
});

const texts = (events: OutputEvent[]) => events.filter((e) => e.type === 'text').map((e) => (e.data as { text: string }).text);

// ---------------------------------------------------------------------------------------------

const mode = MODES.find((m) => m.name === 'postgres+redis')!;
const ready = modeReady(mode, 'integrations/claude-agent-sdk');

describe.skipIf(!ready)('integrations/claude-agent-sdk (PostgreSQL + Redis, two instances)', { timeout: 60_000 }, () => {
  let storage: Awaited<ReturnType<typeof mode.prepare>>;
  let a: Sessions;
  let b: Sessions;

  beforeAll(async () => {
    storage = await mode.prepare();
    a = await storage.open({ INSTANCE_ID: 'claude-a' });
    b = await storage.open({ INSTANCE_ID: 'claude-b' });
  });

  afterAll(async () => {
    await b?.close();
    await a?.close();
    await storage?.dispose();
  });

  it('keeps the SDK session id, resumes it on the other instance from the mirrored transcript, and maps messages to events', async () => {
    const id = `chat-${uniqueToken()}`;
    await a.getOrCreate(id);
    const S = randomUUID();
    const u = line(S, 'user', { message: { role: 'user', content: 'What does notes.txt say?' } });
    const call1 = line(S, 'assistant', { parentUuid: u.uuid, message: { role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_1', name: 'Read', input: { file_path: 'notes.txt' } }] } });
    const res1 = line(S, 'user', { parentUuid: call1.uuid, message: { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_1', content: 'hi' }] } });
    const reply = line(S, 'assistant', { parentUuid: res1.uuid, message: { role: 'assistant', content: [{ type: 'text', text: 'It says hi.' }] } });
    const title: SessionStoreEntry = { type: 'custom-title', customTitle: 'notes', sessionId: S }; // no uuid
    const sub = line(S, 'user', { isSidechain: true, message: { role: 'user', content: 'subtask' } });

    const { query, calls } = scriptedQuery([
      // Turn 1 (instance A): a new SDK session, streamed text, a tool call and its result.
      async function* (call) {
        const store = call.options.sessionStore!;
        yield init(S);
        yield messageStart(S, 'msg_1');
        yield textDelta(S, 'Let me look.');
        yield assistant(S, 'msg_1', [{ type: 'text', text: 'Let me look.' }]);
        yield assistant(S, 'msg_1', [{ type: 'tool_use', id: 'toolu_1', name: 'Read', input: { file_path: 'notes.txt' } }]);
        yield toolResult(S, 'toolu_1', 'hi');
        yield messageStart(S, 'msg_2');
        yield textDelta(S, ' It says');
        yield textDelta(S, ' hi.');
        yield assistant(S, 'msg_2', [{ type: 'text', text: ' It says hi.' }]);
        // The SDK mirrors the transcript in batches; the second repeats a line (a retried batch).
        await store.append({ projectKey: '-srv-a', sessionId: S }, [u, call1, res1]);
        await store.append({ projectKey: '-srv-a', sessionId: S }, [res1, reply, title]);
        await store.append({ projectKey: '-srv-a', sessionId: S, subpath: 'subagents/agent-1' }, [sub]);
        yield result(S);
      },
      // Turn 2 (instance B): resumes; the SDK loads the transcript from the store, not from a disk.
      async function* (call) {
        call.loaded = await call.options.sessionStore!.load({ projectKey: '-srv-b', sessionId: S });
        expect(await call.options.sessionStore!.listSubkeys!({ projectKey: '-srv-b', sessionId: S })).toEqual(['subagents/agent-1']);
        yield init(S);
        // Not streamed (an API error, say): the assistant message's text is the event.
        yield assistant(S, 'msg_3', [{ type: 'text', text: `I read ${call.loaded?.length ?? 0} lines back.` }]);
        yield result(S);
      },
    ]);

    // Turn 1 on A, read on B.
    const run1 = await a.runs.start(id, claudeRunner(a, { query }), { input: 'What does notes.txt say?', persistOutput: true });
    const events1 = await collect(b.runs.stream(id));
    expect(events1.map((e) => e.type)).toEqual(['status', 'text', 'tool_call', 'tool_result', 'text', 'text', 'result', 'done']);
    expect(texts(events1).join('')).toBe('Let me look. It says hi.');
    expect(events1.find((e) => e.type === 'tool_call')?.data).toEqual({ id: 'toolu_1', name: 'Read', input: { file_path: 'notes.txt' } });
    expect(events1.find((e) => e.type === 'tool_result')?.data).toEqual({ id: 'toolu_1', is_error: false, content: 'hi' });
    expect(events1.find((e) => e.type === 'result')?.data).toMatchObject({ subtype: 'success', is_error: false, usage: { input_tokens: 30, output_tokens: 12 } });
    expect((await a.runs.wait(id, run1.id)).status).toBe('completed');
    expect(calls[0]!.prompt).toBe('What does notes.txt say?');
    expect(calls[0]!.options.resume).toBeUndefined();
    expect(calls[0]!.options.includePartialMessages).toBe(true);
    // After the result the prompt ends, so the SDK closes the CLI's stdin and the process exits.
    await waitFor(() => calls[0]!.inputClosed, 5_000, 'the prompt to end');

    const afterTurn1 = await b.get(id);
    expect(afterTurn1.metadata[CLAUDE_SESSION_ID]).toBe(S);
    expect(afterTurn1).toMatchObject({ totalTurns: 1, inputTokens: 30, outputTokens: 12 });

    // Turn 2 on B: resumes the stored id and loads what A mirrored, each line once, in order.
    const run2 = await b.runs.start(id, claudeRunner(b, { query }), { input: 'What did you read?', persistOutput: true });
    const events2 = await collect(a.runs.stream(id));
    expect((await b.runs.wait(id, run2.id)).status).toBe('completed');
    expect(calls[1]!.options.resume).toBe(S);
    expect(calls[1]!.loaded).toEqual([u, call1, res1, reply, title]);
    expect(texts(events2)).toEqual(['I read 5 lines back.']);

    // The history: the replies (persistOutput) and the transcript lines, which carry no role.
    const items = (await a.items.list(id, { limit: 100 })).items;
    expect(items.filter((i) => i.role === 'assistant').map((i) => i.content)).toEqual(['Let me look. It says hi.', 'I read 5 lines back.']);
    const transcript = items.filter((i) => i.type === TRANSCRIPT_ITEM_TYPE);
    expect(transcript.map((i) => i.role)).toEqual([null, null, null, null, null, null]);
    expect(transcript.map((i) => i.clientId)).toEqual([
      `${S}//${u.uuid}`,
      `${S}//${call1.uuid}`,
      `${S}//${res1.uuid}`,
      `${S}//${reply.uuid}`,
      expect.stringMatching(new RegExp(`^${S}//[0-9a-f-]{36}$`)),
      `${S}/subagents/agent-1/${sub.uuid}`,
    ]);
  });

  it('stores a new SDK session id when the SDK announces one (a fork, or a transcript it could not resume)', async () => {
    const id = `chat-${uniqueToken()}`;
    const [S1, S2] = [randomUUID(), randomUUID()];
    await a.getOrCreate(id, { metadata: { [CLAUDE_SESSION_ID]: S1 } });
    const { query, calls } = scriptedQuery([
      async function* () {
        yield init(S2);
        yield result(S2);
      },
    ]);
    const run = await a.runs.start(id, claudeRunner(a, { query }), { input: 'go on' });
    expect((await b.runs.wait(id, run.id)).status).toBe('completed');
    expect(calls[0]!.options.resume).toBe(S1);
    expect((await b.get(id)).metadata[CLAUDE_SESSION_ID]).toBe(S2);
  });

  it('an interrupt from the other instance reaches query.interrupt(); the turn ends with its result', async () => {
    const id = `chat-${uniqueToken()}`;
    await a.getOrCreate(id);
    const S = randomUUID();
    const { query, calls } = scriptedQuery([
      async function* (call) {
        yield init(S);
        yield messageStart(S, 'msg_1');
        yield textDelta(S, 'Reading every file');
        await call.interrupted;
        // What the CLI does on an interrupt: end the turn with a result.
        yield result(S, 'error_during_execution', ['interrupted by the user']);
      },
    ]);
    const run = await a.runs.start(id, claudeRunner(a, { query }), { input: 'Read everything', persistOutput: true });
    const reader = collect(b.runs.stream(id));
    // Once the turn is under way, interrupt it from B.
    await waitFor(() => hasStreamedText(b, id), 10_000, 'the first text event');
    const requested = Date.now();
    await b.runs.interrupt(id);
    const ended = await b.runs.wait(id, run.id);
    console.log(`interrupt on B → run ended on A: ${Date.now() - requested} ms`);
    expect(ended.status).toBe('interrupted');
    expect(calls[0]!.interrupts).toBe(1);
    // It ended its turn: no need to kill the process.
    expect(calls[0]!.options.abortController!.signal.aborted).toBe(false);
    await waitFor(() => calls[0]!.inputClosed, 5_000, 'the prompt to end');
    const events = await reader;
    expect(events.map((e) => e.type)).toEqual(['status', 'text', 'result', 'done']);
    expect(events.at(-1)?.data).toMatchObject({ status: 'interrupted', reason: 'interrupted' });
    // The run was interrupted, not failed, though the SDK's result is an error.
    expect(ended.error).toBeNull();
    // What was said before the stop is the assistant's message (persistOutput).
    expect((await a.items.list(id, { order: 'desc', limit: 1 })).items[0]).toMatchObject({ role: 'assistant', content: 'Reading every file' });
  });

  it('aborts a query that does not end its turn within the grace period', async () => {
    const id = `chat-${uniqueToken()}`;
    await a.getOrCreate(id);
    const S = randomUUID();
    const { query, calls } = scriptedQuery([
      async function* (call) {
        yield init(S);
        yield textDelta(S, 'Busy');
        // Deaf to interrupt(): only the abort stops it (the SDK kills the CLI process then).
        await call.aborted;
        yield textDelta(S, 'never emitted');
      },
    ]);
    const run = await a.runs.start(id, claudeRunner(a, { query, interruptGraceMs: 200 }), { input: 'Loop' });
    await waitFor(() => hasStreamedText(b, id), 10_000, 'the first text event');
    const requested = Date.now();
    await b.runs.interrupt(id);
    const ended = await b.runs.wait(id, run.id);
    const took = Date.now() - requested;
    expect(ended.status).toBe('interrupted');
    expect(calls[0]!.interrupts).toBe(1);
    expect(calls[0]!.options.abortController!.signal.aborted).toBe(true);
    expect(took).toBeGreaterThanOrEqual(150);
    expect(took).toBeLessThan(10_000);
    expect(texts(await collect(b.runs.stream(id)))).toEqual(['Busy']);
  });

  it('an interrupt before the SDK yielded anything still reaches query.interrupt()', async () => {
    const id = `chat-${uniqueToken()}`;
    await a.getOrCreate(id);
    const S = randomUUID();
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const { query, calls } = scriptedQuery([
      async function* (call) {
        yield init(S);
        await call.interrupted;
        yield result(S, 'error_during_execution');
      },
    ]);
    // The runner reads the session first; hold the query back until the interrupt is in.
    const held: QueryFunction = (params) => {
      const q = query(params);
      return Object.assign(
        (async function* () {
          await gate;
          yield* q;
        })(),
        { interrupt: () => q.interrupt() },
      );
    };
    const run = await a.runs.start(id, claudeRunner(a, { query: held }), { input: 'x' });
    await waitFor(() => calls.length === 1, 10_000, 'the query');
    await b.runs.interrupt(id);
    release();
    expect((await b.runs.wait(id, run.id)).status).toBe('interrupted');
    expect(calls[0]!.interrupts).toBe(1);
  });

  it('a turn the SDK ends with an error fails the run with it', async () => {
    const id = `chat-${uniqueToken()}`;
    await a.getOrCreate(id);
    const S = randomUUID();
    const { query } = scriptedQuery([
      async function* () {
        yield init(S);
        yield result(S, 'error_max_turns', ['reached the maximum number of turns (8)']);
      },
    ]);
    const run = await a.runs.start(id, claudeRunner(a, { query }), { input: 'x' });
    const ended = await b.runs.wait(id, run.id);
    expect(ended).toMatchObject({ status: 'failed', endReason: 'runner_error', error: 'Claude: error_max_turns: reached the maximum number of turns (8)' });
    // The id is kept all the same: the next turn resumes what the SDK saved.
    expect((await b.get(id)).metadata[CLAUDE_SESSION_ID]).toBe(S);
  });

  it('the transcript store: batches within the append limit, one item per line uuid, call order kept, null for an unknown session', async () => {
    const id = `store-${uniqueToken()}`;
    await a.getOrCreate(id);
    const S = randomUUID();
    const onA = transcriptStore(a, id);
    const onB = transcriptStore(b, id);
    expect(await onB.load({ projectKey: 'p', sessionId: S })).toBeNull();
    const lines = Array.from({ length: 250 }, (_, i) => line(S, i % 2 ? 'assistant' : 'user', { n: i }));
    // One call with more lines than an append takes, one line twice in it (the second wins, in place).
    const edited = { ...lines[3]!, edited: true };
    const first = onA.append({ projectKey: 'p', sessionId: S }, [...lines.slice(0, 120), edited]);
    // Not awaited in between: appends keep the order of the calls.
    const second = onA.append({ projectKey: 'p', sessionId: S }, lines.slice(120));
    await Promise.all([first, second]);
    const loaded = await onB.load({ projectKey: 'elsewhere', sessionId: S });
    expect(loaded).toHaveLength(250);
    expect(loaded).toEqual(lines.map((l, i) => (i === 3 ? edited : l)));
    expect(await onB.load({ projectKey: 'p', sessionId: randomUUID() })).toBeNull();
    expect(await onB.listSubkeys!({ projectKey: 'p', sessionId: S })).toEqual([]);
  });
});

/** Whether the session's current run has streamed a text event yet (read on `sessions`). */
async function hasStreamedText(sessions: Sessions, id: string): Promise<boolean> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), 200);
  try {
    for await (const e of sessions.runs.stream(id, { signal: controller.signal })) if (e.type === 'text') return true;
  } catch {
    // aborted: nothing yet
  } finally {
    clearTimeout(timer);
  }
  return false;
}

describe('integrations/claude-agent-sdk: messages → events', () => {
  const S = randomUUID();

  it('streams text from deltas and does not repeat it from the assistant message', () => {
    const map = new ClaudeEventMapper();
    const out = [messageStart(S, 'm'), textDelta(S, 'a'), textDelta(S, 'b'), assistant(S, 'm', [{ type: 'text', text: 'ab' }])].flatMap((m) => map.map(m));
    expect(out).toEqual([
      { type: 'text', data: { text: 'a' } },
      { type: 'text', data: { text: 'b' } },
    ]);
  });

  it("keeps a subagent's text inside it and marks its tool calls and results", () => {
    const map = new ClaudeEventMapper();
    const out = [
      assistant(S, 'm1', [{ type: 'tool_use', id: 'toolu_task', name: 'Task', input: { prompt: 'look' } }]),
      assistant(S, 'm2', [{ type: 'text', text: 'thinking aloud' }, { type: 'tool_use', id: 'toolu_2', name: 'Grep', input: { pattern: 'x' } }], 'toolu_task'),
      toolResult(S, 'toolu_2', [{ type: 'text', text: 'found' }], 'toolu_task'),
    ].flatMap((m) => map.map(m));
    expect(out).toEqual([
      { type: 'tool_call', data: { id: 'toolu_task', name: 'Task', input: { prompt: 'look' } } },
      { type: 'tool_call', data: { id: 'toolu_2', name: 'Grep', input: { pattern: 'x' }, parent_tool_use_id: 'toolu_task' } },
      { type: 'tool_result', data: { id: 'toolu_2', is_error: false, content: [{ type: 'text', text: 'found' }], parent_tool_use_id: 'toolu_task' } },
    ]);
  });

  it('cuts a tool result longer than the bound and says so', () => {
    const map = new ClaudeEventMapper({ maxToolResultBytes: 10 });
    expect(map.map(toolResult(S, 't', 'é'.repeat(20)))).toEqual([{ type: 'tool_result', data: { id: 't', is_error: false, content: 'ééééé', truncated: true } }]);
    const [block] = map.map(toolResult(S, 't', [{ type: 'text', text: 'a long one' }]));
    expect(block?.data).toMatchObject({ content: '[{"type":"', truncated: true });
  });

  it('ignores what is no output (init, status, hooks)', () => {
    const map = new ClaudeEventMapper();
    expect(map.map(init(S))).toEqual([]);
    expect(map.map(sdk({ type: 'system', subtype: 'status', status: 'compacting', session_id: S }))).toEqual([]);
  });
});
