/**
 * The Claude Agent SDK example with the real SDK and its real Claude Code process, the model
 * replaced by a local stub of the Anthropic Messages API (ANTHROPIC_BASE_URL; no network), on
 * two instances sharing PostgreSQL and Redis, each with its own CLAUDE_CONFIG_DIR, HOME and
 * working directory, as two hosts would have:
 * - turn 1 on A (a tool call, its result, a reply); turn 2 on B resumes it from the transcript
 *   mirrored into the session: the model gets turn 1's messages;
 * - without the mirror the same turn on B fails: the transcript is on A's disk only;
 * - an interrupt from B reaches the process on A, which ends its turn (no kill needed).
 * Skipped by name when the SDK's platform binary is not installed.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { query, type Options } from '@anthropic-ai/claude-agent-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLAUDE_SESSION_ID, claudeRunner, type QueryFunction } from '../../examples/claude-agent-sdk/claude-runner.js';
import type { OutputEvent, Sessions } from '../../src/index.js';
import { requireBinaries } from '../setup/harness.js';
import { collect, MODES, modeReady, uniqueToken, waitFor } from '../runs/support.js';

const SUITE = 'integrations/claude-agent-sdk (the SDK and its CLI against a stub Messages API)';
const BINARY = `@anthropic-ai/claude-agent-sdk-${process.platform}-${process.arch}`;

function findBinary(): string | null {
  try {
    const dir = path.dirname(createRequire(import.meta.url).resolve(`${BINARY}/package.json`));
    return existsSync(path.join(dir, 'claude')) ? dir : null;
  } catch {
    return null;
  }
}

const mode = MODES.find((m) => m.name === 'postgres+redis')!;
const ready = modeReady(mode, SUITE) && requireBinaries([BINARY], SUITE, () => findBinary());

// --- A stub of the Messages API: scripted replies, streamed as the API streams them -----------

type Reply = { text: string[]; delayMs?: number } | { toolUse: { id: string; name: string; input: unknown } };

interface MessagesRequest {
  model: string;
  messages: { role: string; content: string | { type: string; text?: string; content?: unknown }[] }[];
}

class MessagesStub {
  readonly requests: MessagesRequest[] = [];
  readonly replies: Reply[] = [];
  readonly #server = http.createServer((req, res) => void this.#answer(req, res));
  url = '';

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.#server.address() as { port: number }).port}`;
  }

  async stop(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  async #answer(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    let body = '';
    for await (const chunk of req) body += String(chunk);
    const url = req.url ?? '';
    if (req.method !== 'POST' || !url.startsWith('/v1/messages') || url.includes('count_tokens')) {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"type":"error","error":{"type":"not_found_error","message":"stub"}}');
      return;
    }
    const request = JSON.parse(body) as MessagesRequest;
    this.requests.push(request);
    const reply = this.replies.shift() ?? { text: ['(no reply scripted)'] };
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    const send = (type: string, data: Record<string, unknown>) => res.write(`event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`);
    const id = `msg_${uniqueToken()}`;
    send('message_start', {
      message: { id, type: 'message', role: 'assistant', model: request.model, content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: 20, output_tokens: 1 } },
    });
    if ('toolUse' in reply) {
      const { id: toolId, name, input } = reply.toolUse;
      send('content_block_start', { index: 0, content_block: { type: 'tool_use', id: toolId, name, input: {} } });
      send('content_block_delta', { index: 0, delta: { type: 'input_json_delta', partial_json: JSON.stringify(input) } });
      send('content_block_stop', { index: 0 });
      send('message_delta', { delta: { stop_reason: 'tool_use', stop_sequence: null }, usage: { output_tokens: 7 } });
    } else {
      send('content_block_start', { index: 0, content_block: { type: 'text', text: '' } });
      for (const text of reply.text) {
        if (res.destroyed) return;
        send('content_block_delta', { index: 0, delta: { type: 'text_delta', text } });
        await new Promise((r) => setTimeout(r, reply.delayMs ?? 5));
      }
      send('content_block_stop', { index: 0 });
      send('message_delta', { delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: reply.text.length } });
    }
    send('message_stop', {});
    res.end();
  }
}

/** The text of a request's messages, in order (what the model was given). */
function transcriptOf(request: MessagesRequest): string[] {
  return request.messages.flatMap((m) =>
    typeof m.content === 'string'
      ? [`${m.role}: ${m.content}`]
      : m.content
          .filter((b) => b.type === 'text' && !b.text?.includes('<system-reminder>'))
          .map((b) => `${m.role}: ${b.text ?? ''}`),
  );
}

const texts = (events: OutputEvent[]) => events.filter((e) => e.type === 'text').map((e) => (e.data as { text: string }).text).join('');

describe.skipIf(!ready)(SUITE, { timeout: 90_000 }, () => {
  let storage: Awaited<ReturnType<typeof mode.prepare>>;
  let a: Sessions;
  let b: Sessions;
  const stub = new MessagesStub();
  const scratch = mkdtempSync(path.join(os.tmpdir(), 'as-claude-cli-'));

  /** What one host gives the SDK: its own config directory, home and working directory. */
  function host(name: string): { options: NonNullable<Parameters<typeof claudeRunner>[1]['options']>; cwd: string } {
    const root = path.join(scratch, name);
    for (const dir of ['config', 'home', 'work']) mkdirSync(path.join(root, dir), { recursive: true });
    const cwd = path.join(root, 'work');
    return {
      cwd,
      options: {
        cwd,
        model: 'claude-sonnet-4-5',
        allowedTools: ['Glob'],
        permissionMode: 'dontAsk',
        maxTurns: 4,
        settingSources: [],
        env: {
          PATH: process.env.PATH,
          HOME: path.join(root, 'home'),
          CLAUDE_CONFIG_DIR: path.join(root, 'config'),
          ANTHROPIC_API_KEY: 'sk-ant-stub',
          ANTHROPIC_BASE_URL: stub.url,
          CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
          DISABLE_TELEMETRY: '1',
          DISABLE_AUTOUPDATER: '1',
        },
      },
    };
  }

  beforeAll(async () => {
    await stub.start();
    storage = await mode.prepare();
    a = await storage.open({ INSTANCE_ID: 'claude-cli-a' });
    b = await storage.open({ INSTANCE_ID: 'claude-cli-b' });
  });

  afterAll(async () => {
    await b?.close();
    await a?.close();
    await storage?.dispose();
    await stub.stop();
    rmSync(scratch, { recursive: true, force: true });
  });

  it('resumes on B, with its own disk, the session A ran: the model gets the first turn back', async () => {
    const id = `chat-${uniqueToken()}`;
    await a.getOrCreate(id);
    const hostA = host(`a-${id}`);
    const hostB = host(`b-${id}`);
    writeFileSync(path.join(hostA.cwd, 'notes.txt'), 'hi\n');

    stub.replies.push({ toolUse: { id: 'toolu_stub_1', name: 'Glob', input: { pattern: '*.txt' } } }, { text: ['There is ', 'notes.txt.'] });
    const first = stub.requests.length;
    const run1 = await a.runs.start(id, claudeRunner(a, { query, options: hostA.options }), { input: 'Which text files are here?', persistOutput: true });
    const events1 = await collect(b.runs.stream(id));
    const ended1 = await a.runs.wait(id, run1.id);
    expect(ended1.error).toBeNull();
    expect(ended1.status).toBe('completed');
    expect(events1.map((e) => e.type).filter((t) => t !== 'text')).toEqual(['status', 'tool_call', 'tool_result', 'result', 'done']);
    expect(texts(events1)).toBe('There is notes.txt.');
    expect(events1.find((e) => e.type === 'tool_call')?.data).toEqual({ id: 'toolu_stub_1', name: 'Glob', input: { pattern: '*.txt' } });
    expect(events1.find((e) => e.type === 'tool_result')?.data).toMatchObject({ id: 'toolu_stub_1', is_error: false });
    expect(JSON.stringify(events1.find((e) => e.type === 'tool_result')?.data)).toContain('notes.txt');
    const claudeId = (await b.get(id)).metadata[CLAUDE_SESSION_ID];
    expect(claudeId).toMatch(/^[0-9a-f-]{36}$/);
    expect(stub.requests.length - first).toBe(2);

    stub.replies.push({ text: ['You asked ', 'which text files are here.'] });
    const run2 = await b.runs.start(id, claudeRunner(b, { query, options: hostB.options }), { input: 'What did I ask you before?' });
    const events2 = await collect(a.runs.stream(id));
    const ended2 = await b.runs.wait(id, run2.id);
    expect(ended2.error).toBeNull();
    expect(ended2.status).toBe('completed');
    expect(texts(events2)).toBe('You asked which text files are here.');
    // The model got the whole first turn (the tool call and its result included), then the question.
    const request = stub.requests.at(-1)!;
    expect(request.messages.map((m) => m.role)).toEqual(['user', 'assistant', 'user', 'assistant', 'user']);
    expect(transcriptOf(request)).toEqual([
      'user: Which text files are here?',
      'assistant: There is notes.txt.',
      'user: What did I ask you before?',
    ]);
    expect((await a.get(id)).metadata[CLAUDE_SESSION_ID]).toBe(claudeId);
  });

  it('without the mirror, B cannot resume what A ran: the transcript is on A’s disk', async () => {
    const id = `chat-${uniqueToken()}`;
    await a.getOrCreate(id);
    const hostA = host(`a-${id}`);
    const hostB = host(`b-${id}`);
    stub.replies.push({ text: ['Hello.'] });
    const run1 = await a.runs.start(id, claudeRunner(a, { query, options: hostA.options, storeTranscript: false }), { input: 'Hi' });
    expect((await a.runs.wait(id, run1.id)).status).toBe('completed');
    const requests = stub.requests.length;
    const run2 = await b.runs.start(id, claudeRunner(b, { query, options: hostB.options, storeTranscript: false }), { input: 'Again' });
    const ended = await b.runs.wait(id, run2.id);
    expect(ended.status).toBe('failed');
    expect(ended.error).toMatch(/No conversation found with session ID/);
    expect(stub.requests.length).toBe(requests);
  });

  it('an interrupt from B reaches the Claude Code process on A, which ends its turn', async () => {
    const id = `chat-${uniqueToken()}`;
    await a.getOrCreate(id);
    const hostA = host(`a-${id}`);
    let given: Options | null = null;
    const watched: QueryFunction = (params) => {
      given = params.options;
      return query(params);
    };
    stub.replies.push({ text: Array.from({ length: 300 }, (_, i) => `word${i} `), delayMs: 50 });
    const run = await a.runs.start(id, claudeRunner(a, { query: watched, options: hostA.options }), { input: 'Talk for a while', persistOutput: true });
    const reader = collect(b.runs.stream(id));
    // Once the text flows, interrupt from the other instance.
    await waitFor(() => hasText(b, id), 30_000, 'the first text event');
    const requested = Date.now();
    await b.runs.interrupt(id);
    const ended = await b.runs.wait(id, run.id);
    console.log(`interrupt on B → the CLI on A ended its turn: ${Date.now() - requested} ms`);
    expect(ended.status).toBe('interrupted');
    // interrupt() did it: the process was not killed.
    expect(given!.abortController!.signal.aborted).toBe(false);
    const events = await reader;
    expect(events.at(-1)?.data).toMatchObject({ status: 'interrupted' });
    expect(events.find((e) => e.type === 'result')?.data).toMatchObject({ is_error: true });
    const said = texts(events);
    expect(said).toMatch(/^word0 /);
    expect(said).not.toContain('word299');
    // The reply so far is the assistant's message.
    expect((await a.items.list(id, { order: 'desc', limit: 50 })).items.find((i) => i.role === 'assistant')?.content).toBe(said);
  });
});

/** Whether the session's current run has streamed text yet. */
async function hasText(sessions: Sessions, id: string): Promise<boolean> {
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
