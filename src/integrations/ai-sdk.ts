/**
 * `agent-sessions/ai-sdk`: chat persistence and resumable streams for the Vercel AI SDK
 * (the `ai` package, v6; an optional peer, imported here for its types only).
 *
 *   const chat = createChatStore({ sessions });          // or { client }: the HTTP client
 *   await chat.saveMessages(chatId, messages);           // upsert by message id
 *   const messages = await chat.loadMessages(chatId);    // UIMessage[], in order
 *   return chat.resumeStream(chatId);                    // GET /api/chat/[id]/stream
 *
 * A chat is a session whose id is the chat id. Each UIMessage is one item (`client_id` =
 * the message id, `type` = `ui_message`, `content` = the whole message), so saving a message
 * again with more parts replaces it in place. A reply is a run: its output events are
 * translated into the SDK's UI message stream (SSE, header `x-vercel-ai-ui-message-stream:
 * v1`), from the run's first event each time, on whichever instance serves the request;
 * `pipeUIMessageStreamToRun` writes an SDK stream (`streamText(...).toUIMessageStream()`)
 * into a run so that its output is durable and resumable. Interrupting the run is the stop
 * button. The README has the route handlers, docs/integrations.md the event vocabulary.
 */
import type { UIMessage, UIMessageChunk } from 'ai';
import type { Sessions } from '../app/sessions.js';
import type { AgentSessionsClient } from '../client/client.js';
import type { RunContext } from '../core/runs.js';

/** The item type a saved UIMessage gets. */
export const UI_MESSAGE_ITEM_TYPE = 'ui_message';

/** The headers of the SDK's UI message stream protocol (the `ai` package's `UI_MESSAGE_STREAM_HEADERS`, v1). */
export const UI_MESSAGE_STREAM_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'content-type': 'text/event-stream',
  'cache-control': 'no-cache',
  connection: 'keep-alive',
  'x-vercel-ai-ui-message-stream': 'v1',
  'x-accel-buffering': 'no',
});

/** The library parts the store uses (a `Sessions` from `createSessions()`). */
export type ChatStoreSessions = Pick<Sessions, 'ensure' | 'items' | 'runs' | 'config'>;
/** The client parts the store uses (an `AgentSessionsClient` from `agent-sessions/client`). */
export type ChatStoreClient = Pick<AgentSessionsClient, 'getOrCreate' | 'items' | 'runs'>;

export interface ChatStreamOptions {
  /**
   * The `errorText` of the `error` chunk a failed run ends with (default: `The run failed
   * (<reason>).`, which tells the browser nothing of the server's error; the SDK masks errors
   * the same way).
   */
  errorText?: (failure: { runId: string; reason: string; error: string | null }) => string;
  /** Interval of SSE comment lines that keep proxies from closing a quiet stream (default 15 s; 0 = none). */
  keepAliveMs?: number;
}

export type ChatStoreOptions =
  | (ChatStreamOptions & { sessions: ChatStoreSessions; /** Default `default`. */ tenant?: string })
  | (ChatStreamOptions & { client: ChatStoreClient });

export interface ChatCallOptions {
  signal?: AbortSignal;
}

export interface SaveMessagesOptions extends ChatCallOptions {
  /**
   * `messages` is the whole chat: stored messages after the first place where the stored
   * chat and `messages` differ are removed before saving, as after a regenerate or an edit
   * (the SDK drops the messages after the one regenerated). Default false: upsert only,
   * nothing is removed.
   */
  replace?: boolean;
}

export interface ChatStore<UI_MESSAGE extends UIMessage = UIMessage> {
  /** The chat's messages in order; [] for a chat that does not exist. */
  loadMessages(chatId: string, options?: ChatCallOptions): Promise<UI_MESSAGE[]>;
  /**
   * Upserts each message by its id (creating the chat's session when needed): a new id is
   * appended, a stored one with another body is replaced in place, an unchanged one is left
   * alone. Pass the whole array `onFinish` hands over; `replace` also removes what it dropped.
   */
  saveMessages(chatId: string, messages: readonly UI_MESSAGE[], options?: SaveMessagesOptions): Promise<void>;
  /**
   * For `GET /api/chat/[id]/stream` (`useChat({ resume: true })`): 204 when the chat's latest
   * run is not running or queued, else that run's output from its start as the SDK's UI
   * message stream, ending with the run. Any instance answers it.
   */
  resumeStream(chatId: string, options?: ChatCallOptions): Promise<Response>;
  /**
   * One run's output from its start as the SDK's UI message stream, whatever its state
   * (queued: once it starts; ended: the replay): the answer of the `POST /api/chat` that
   * started it.
   */
  streamRun(chatId: string, runId: string, options?: ChatCallOptions): Promise<Response>;
}

/** One output event as both the library and the HTTP API give it. */
interface OutputEventView {
  seq: number;
  runId: string;
  type: string;
  data: unknown;
}

interface RunView {
  id: string;
  status: string;
  startSeq: number | null;
  endReason: string | null;
}

interface StoredItem {
  id: string;
  clientId: string | null;
  role: string | null;
  type: string;
  content: unknown;
}

interface NewChatItem {
  clientId: string;
  role: string;
  type: string;
  content: unknown;
}

/** What the store needs of agent-sessions, over the library or the HTTP client. */
interface ChatBackend {
  /** Most items one append takes (the store's ITEMS_PER_APPEND; the HTTP API's default). */
  readonly appendBatch: number;
  /** Every item in order; null when the session does not exist. */
  listItems(chatId: string, signal?: AbortSignal): Promise<StoredItem[] | null>;
  /** Appends (upserts by client id), creating the session when it does not exist. */
  append(chatId: string, items: NewChatItem[], signal?: AbortSignal): Promise<void>;
  pop(chatId: string, signal?: AbortSignal): Promise<void>;
  clear(chatId: string, signal?: AbortSignal): Promise<void>;
  /** The newest run; null when there is none or no such session. */
  latestRun(chatId: string, signal?: AbortSignal): Promise<RunView | null>;
  getRun(chatId: string, runId: string, signal?: AbortSignal): Promise<RunView>;
  /** The session's output after `after` (default: from the current run's start), ending after a terminal event. */
  stream(chatId: string, after: number | undefined, signal: AbortSignal): AsyncIterable<OutputEventView>;
}

const PAGE = 100;
const TERMINAL = new Set(['done', 'error']);
const ENDED = new Set(['completed', 'failed', 'interrupted', 'cancelled']);
const DEFAULT_KEEP_ALIVE_MS = 15_000;

const hasCode = (err: unknown, code: string) => typeof err === 'object' && err !== null && (err as { code?: unknown }).code === code;

/** Runs `call`; when the session does not exist yet, creates it and runs `call` again. */
async function creatingOnMissing(call: () => Promise<unknown>, create: () => Promise<unknown>): Promise<void> {
  try {
    await call();
  } catch (err) {
    if (!hasCode(err, 'session_not_found')) throw err;
    await create();
    await call();
  }
}

function libraryBackend(sessions: ChatStoreSessions, tenant: string | undefined): ChatBackend {
  const opts = (signal?: AbortSignal) => ({ ...(tenant === undefined ? {} : { tenant }), signal });
  const run = (r: { id: string; status: string; startSeq: number | null; endReason: string | null }): RunView => ({
    id: r.id,
    status: r.status,
    startSeq: r.startSeq,
    endReason: r.endReason,
  });
  return {
    appendBatch: sessions.config.limits.itemsPerAppend,
    async listItems(chatId, signal) {
      const items: StoredItem[] = [];
      let cursor: string | undefined;
      try {
        do {
          const page = await sessions.items.list(chatId, { cursor, limit: PAGE }, opts(signal));
          items.push(...page.items);
          cursor = page.nextCursor ?? undefined;
        } while (cursor !== undefined);
      } catch (err) {
        if (hasCode(err, 'session_not_found')) return null;
        throw err;
      }
      return items;
    },
    append: (chatId, items, signal) =>
      creatingOnMissing(
        () => sessions.items.append(chatId, items, opts(signal)),
        () => sessions.ensure(chatId, {}, opts(signal)),
      ),
    async pop(chatId, signal) {
      await sessions.items.pop(chatId, opts(signal));
    },
    async clear(chatId, signal) {
      await sessions.items.clear(chatId, opts(signal));
    },
    async latestRun(chatId, signal) {
      try {
        const page = await sessions.runs.list(chatId, { limit: 1 }, opts(signal));
        return page.items[0] ? run(page.items[0]) : null;
      } catch (err) {
        if (hasCode(err, 'session_not_found')) return null;
        throw err;
      }
    },
    async getRun(chatId, runId, signal) {
      return run(await sessions.runs.get(chatId, runId, opts(signal)));
    },
    async *stream(chatId, after, signal) {
      for await (const e of sessions.runs.stream(chatId, { ...opts(signal), ...(after === undefined ? {} : { after }) })) {
        yield { seq: e.seq, runId: e.runId, type: e.type, data: e.data };
      }
    },
  };
}

function clientBackend(client: ChatStoreClient): ChatBackend {
  const run = (r: { id: string; status: string; start_seq: number | null; end_reason: string | null }): RunView => ({
    id: r.id,
    status: r.status,
    startSeq: r.start_seq,
    endReason: r.end_reason,
  });
  const wire = (items: NewChatItem[]) => items.map((i) => ({ client_id: i.clientId, role: i.role, type: i.type, content: i.content }));
  return {
    // The server's ITEMS_PER_APPEND is not known here: its default.
    appendBatch: PAGE,
    async listItems(chatId, signal) {
      const items: StoredItem[] = [];
      let cursor: string | undefined;
      try {
        do {
          const page = await client.items.list(chatId, { cursor, limit: PAGE }, { signal });
          for (const i of page.items) items.push({ id: i.id, clientId: i.client_id, role: i.role, type: i.type, content: i.content });
          cursor = page.next_cursor ?? undefined;
        } while (cursor !== undefined);
      } catch (err) {
        if (hasCode(err, 'session_not_found')) return null;
        throw err;
      }
      return items;
    },
    append: (chatId, items, signal) =>
      creatingOnMissing(
        () => client.items.append(chatId, wire(items), { signal }),
        () => client.getOrCreate(chatId, {}, { signal }),
      ),
    async pop(chatId, signal) {
      await client.items.pop(chatId, { signal });
    },
    async clear(chatId, signal) {
      await client.items.clear(chatId, { signal });
    },
    async latestRun(chatId, signal) {
      try {
        const page = await client.runs.list(chatId, { limit: 1 }, { signal });
        return page.runs[0] ? run(page.runs[0]) : null;
      } catch (err) {
        if (hasCode(err, 'session_not_found')) return null;
        throw err;
      }
    },
    async getRun(chatId, runId, signal) {
      return run(await client.runs.get(chatId, runId, { signal }));
    },
    async *stream(chatId, after, signal) {
      for await (const e of client.runs.stream(chatId, { signal, ...(after === undefined ? {} : { lastEventId: after }) })) {
        yield { seq: e.seq, runId: e.run_id, type: e.type, data: e.data };
      }
    },
  };
}

/** The chat's stored items as UIMessages: saved ones whole, plain text items (a run's `persistOutput`) as a text message. */
function toMessages<UI_MESSAGE extends UIMessage>(items: readonly StoredItem[]): UI_MESSAGE[] {
  const messages: UI_MESSAGE[] = [];
  const at = new Map<string, number>();
  for (const item of items) {
    const message = toMessage<UI_MESSAGE>(item);
    if (message === null) continue;
    // A run's persisted reply (id = the run id) and the same reply saved by the SDK share an id.
    const index = at.get(message.id);
    if (index === undefined) {
      at.set(message.id, messages.length);
      messages.push(message);
    } else if (item.type === UI_MESSAGE_ITEM_TYPE) {
      messages[index] = message;
    }
  }
  return messages;
}

const ROLES = new Set(['system', 'user', 'assistant']);

function toMessage<UI_MESSAGE extends UIMessage>(item: StoredItem): UI_MESSAGE | null {
  const c = item.content;
  if (item.type === UI_MESSAGE_ITEM_TYPE) {
    if (isObject(c) && typeof c.id === 'string' && typeof c.role === 'string' && Array.isArray(c.parts)) return c as unknown as UI_MESSAGE;
    return null;
  }
  if (item.role === null || !ROLES.has(item.role) || typeof c !== 'string') return null;
  return { id: item.clientId ?? item.id, role: item.role, parts: [{ type: 'text', text: c }] } as UI_MESSAGE;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function checkMessages(messages: readonly UIMessage[]): void {
  const seen = new Set<string>();
  for (const [i, m] of messages.entries()) {
    if (!isObject(m) || typeof m.id !== 'string' || m.id.length === 0 || m.id.length > 256) {
      throw new TypeError(
        `messages[${i}] has no usable id (1 to 256 characters): give toUIMessageStream() a generateMessageId so the reply has one`,
      );
    }
    if (seen.has(m.id)) throw new TypeError(`messages[${i}]: the id ${JSON.stringify(m.id)} appears twice`);
    seen.add(m.id);
  }
}

/** The message id a stored item stands for (what `toMessages` would give it), or null. */
function messageIdOf(item: StoredItem): string | null {
  return toMessage(item)?.id ?? null;
}

/** Creates the chat store over the library (`{ sessions }`) or the HTTP client (`{ client }`). */
export function createChatStore<UI_MESSAGE extends UIMessage = UIMessage>(options: ChatStoreOptions): ChatStore<UI_MESSAGE> {
  const backend = 'sessions' in options ? libraryBackend(options.sessions, options.tenant) : clientBackend(options.client);
  const errorText = options.errorText ?? ((f) => `The run failed (${f.reason}).`);
  const keepAliveMs = options.keepAliveMs ?? DEFAULT_KEEP_ALIVE_MS;

  const streamRun = async (chatId: string, run: RunView, signal: AbortSignal | undefined): Promise<Response> => {
    const abort = new AbortController();
    const onAbort = () => abort.abort(signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    const chunks = runChunks(backend, chatId, run, { errorText, signal: abort.signal });
    const body = sseBody(chunks, keepAliveMs, () => {
      signal?.removeEventListener('abort', onAbort);
      abort.abort();
    });
    return new Response(body, { status: 200, headers: { ...UI_MESSAGE_STREAM_HEADERS } });
  };

  return {
    async loadMessages(chatId, opts = {}) {
      const items = await backend.listItems(chatId, opts.signal);
      return items === null ? [] : toMessages<UI_MESSAGE>(items);
    },

    async saveMessages(chatId, messages, opts = {}) {
      checkMessages(messages);
      if (opts.replace) await dropDivergentTail(backend, chatId, messages, opts.signal);
      for (let i = 0; i < messages.length; i += backend.appendBatch) {
        const batch = messages.slice(i, i + backend.appendBatch).map((m) => ({ clientId: m.id, role: m.role, type: UI_MESSAGE_ITEM_TYPE, content: m }));
        await backend.append(chatId, batch, opts.signal);
      }
    },

    async resumeStream(chatId, opts = {}) {
      const run = await backend.latestRun(chatId, opts.signal);
      if (run === null || ENDED.has(run.status)) return new Response(null, { status: 204 });
      return streamRun(chatId, run, opts.signal);
    },

    async streamRun(chatId, runId, opts = {}) {
      return streamRun(chatId, await backend.getRun(chatId, runId, opts.signal), opts.signal);
    },
  };
}

/**
 * Removes the stored messages from the first place where the stored chat and `messages`
 * differ (by id, in order), so that appending `messages` leaves exactly them. Items only
 * leave from the end (pop), or all at once (clear) when nothing is in common.
 */
async function dropDivergentTail(backend: ChatBackend, chatId: string, messages: readonly UIMessage[], signal?: AbortSignal): Promise<void> {
  const items = await backend.listItems(chatId, signal);
  if (items === null || items.length === 0) return;
  let common = 0;
  while (common < items.length && common < messages.length && messageIdOf(items[common] as StoredItem) === messages[common]?.id) common++;
  if (common === items.length) return;
  if (common === 0) return backend.clear(chatId, signal);
  for (let n = items.length - common; n > 0; n--) await backend.pop(chatId, signal);
}

/**
 * The events of one run, from its first: a run still queued is waited for (the stream ends
 * at the terminal event of each run before it, and is opened again after it); a run that
 * ended without starting gets a terminal event made from its row.
 */
async function* runEvents(backend: ChatBackend, chatId: string, run: RunView, signal: AbortSignal): AsyncGenerator<OutputEventView> {
  let after = run.startSeq === null ? undefined : run.startSeq - 1;
  // The output retention (OUTPUT_RETENTION_HOURS) prunes whole runs: a `gap` from the run's
  // start means its events are gone, and only its end can still be told.
  let pruned = false;
  for (;;) {
    let last: number | undefined;
    for await (const e of backend.stream(chatId, after, signal)) {
      last = e.seq;
      if (e.type === 'gap') pruned = true;
      if (e.runId !== run.id) continue;
      yield e;
      if (TERMINAL.has(e.type)) return;
    }
    signal.throwIfAborted();
    const now = await backend.getRun(chatId, run.id, signal);
    if (ENDED.has(now.status) && (now.startSeq === null || last === undefined || pruned)) {
      // Cancelled while queued (never started), ended with nothing more to read, or pruned.
      yield { seq: last ?? 0, runId: run.id, type: now.status === 'failed' ? 'error' : 'done', data: { status: now.status, reason: now.endReason } };
      return;
    }
    if (last === undefined) await new Promise((r) => setTimeout(r, 100));
    after = last ?? after;
  }
}

async function* runChunks(
  backend: ChatBackend,
  chatId: string,
  run: RunView,
  opts: { errorText: NonNullable<ChatStreamOptions['errorText']>; signal: AbortSignal },
): AsyncGenerator<UIMessageChunk> {
  const translator = new UIMessageChunkTranslator(run.id, opts.errorText);
  for await (const event of runEvents(backend, chatId, run, opts.signal)) yield* translator.push(event);
}

/**
 * The SDK's SSE framing (its `JsonToSseTransformStream`): one `data: <json>` frame per chunk,
 * `data: [DONE]` at the end, comment lines to keep a quiet connection open. Pulled, so a slow
 * reader slows the reading of the run rather than filling memory.
 */
function sseBody(chunks: AsyncGenerator<UIMessageChunk>, keepAliveMs: number, release: () => void): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  let pending: Promise<IteratorResult<UIMessageChunk>> | null = null;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      pending ??= chunks.next();
      let timer: NodeJS.Timeout | undefined;
      const tick = new Promise<'tick'>((resolve) => {
        if (keepAliveMs > 0) timer = setTimeout(() => resolve('tick'), keepAliveMs);
      });
      try {
        const next = await Promise.race([pending, tick]);
        if (next === 'tick') return controller.enqueue(encoder.encode(': keep-alive\n\n'));
        pending = null;
        if (next.done) {
          controller.enqueue(encoder.encode('data: [DONE]\n\n'));
          controller.close();
          release();
          return;
        }
        controller.enqueue(encoder.encode(`data: ${JSON.stringify(next.value)}\n\n`));
      } catch (err) {
        release();
        throw err;
      } finally {
        clearTimeout(timer);
      }
    },
    cancel() {
      // The reader went away (the browser closed the tab): stop reading the run.
      pending?.catch(() => undefined);
      release();
      void chunks.return(undefined).catch(() => undefined);
    },
  });
}

// ---------------------------------------------------------------------------------------
// Output events → UI message chunks

/** Chunk types an output event may carry as its own type, passed through as `{ type, ...data }`. */
const CHUNK_TYPES = new Set([
  'start',
  'finish',
  'abort',
  'message-metadata',
  'start-step',
  'finish-step',
  'text-start',
  'text-delta',
  'text-end',
  'reasoning-start',
  'reasoning-delta',
  'reasoning-end',
  'tool-input-start',
  'tool-input-delta',
  'tool-input-available',
  'tool-input-error',
  'tool-approval-request',
  'tool-output-available',
  'tool-output-error',
  'tool-output-denied',
  'source-url',
  'source-document',
  'file',
]);
const isChunkType = (type: string) => CHUNK_TYPES.has(type) || type.startsWith('data-');

const str = (...values: unknown[]): string | undefined => values.find((v): v is string => typeof v === 'string' && v !== '');

/** Optional fields copied from an event's data onto the chunk made of it, when present. */
function extras(data: Record<string, unknown>, names: readonly string[]): Record<string, unknown> {
  return Object.fromEntries(names.filter((n) => data[n] !== undefined && data[n] !== null).map((n) => [n, data[n]]));
}
const TOOL_CALL_EXTRAS = ['providerExecuted', 'providerMetadata', 'toolMetadata', 'dynamic', 'title'];
const TOOL_RESULT_EXTRAS = ['providerExecuted', 'providerMetadata', 'toolMetadata', 'dynamic', 'preliminary'];

/**
 * Turns one run's output events, in seq order from its first, into UI message chunks. The
 * same events give the same chunks (ids included) on every instance and every replay, which
 * is what lets a reconnecting `useChat` replace the message it was showing:
 *
 * - `start` (with `messageId`: the run's own `start` chunk's, else the run id) before the
 *   first chunk; `status` events give nothing;
 * - `text` (`{ text, id? }` or a string) → `text-start` / `text-delta` / `text-end`; without
 *   an `id`, consecutive text events are one part (id `<run id>-text-<n>`) that the next
 *   other event closes;
 * - `tool_call` (`{ id, name, input }`) → `tool-input-available`; `tool_result` (`{ id,
 *   output }` or `{ id, result }`) → `tool-output-available` (`tool-output-error` for `{ id,
 *   errorText }`), only for a call seen before;
 * - an event whose type is a chunk type (`reasoning-delta`, `data-weather`, `finish`, ...) →
 *   that chunk (`{ type, ...data }`); `agent_error` (`{ errorText }`, what the SDK's `error`
 *   chunk becomes, as runners cannot emit `error`) → `error`;
 * - `done` → `finish` (completed) or `abort` (interrupted) unless the run sent its own;
 *   `error` (the run failed) → `error` with `errorText(...)`.
 */
export class UIMessageChunkTranslator {
  private started = false;
  private ended = false;
  private finished = false;
  private autoText: string | null = null;
  private autoTexts = 0;
  private autoCalls = 0;
  private lastCall: string | null = null;
  private readonly openTexts = new Set<string>();
  private readonly calls = new Set<string>();

  constructor(
    private readonly runId: string,
    private readonly errorText: NonNullable<ChatStreamOptions['errorText']> = (f) => `The run failed (${f.reason}).`,
  ) {}

  push(event: Pick<OutputEventView, 'type' | 'data'>): UIMessageChunk[] {
    if (this.ended) return [];
    const data = isObject(event.data) ? event.data : {};
    switch (event.type) {
      case 'status':
        return [];
      case 'text':
        return this.text(typeof event.data === 'string' ? event.data : data.text, data);
      case 'tool_call':
        return this.toolCall(data);
      case 'tool_result':
        return this.toolResult(event.data, data);
      case 'agent_error':
        return this.emit({ type: 'error', errorText: str(data.errorText, data.message, data.error) ?? 'The agent reported an error.' });
      case 'done':
        return this.end(data.status === 'interrupted' ? { type: 'abort', reason: str(data.reason) ?? 'interrupted' } : { type: 'finish' });
      case 'error':
        return this.end({
          type: 'error',
          errorText: this.errorText({
            runId: this.runId,
            reason: str(data.reason) ?? 'failed',
            error: typeof data.error === 'string' ? data.error : null,
          }),
        });
      default:
        return isChunkType(event.type) ? this.chunk({ ...data, type: event.type } as UIMessageChunk) : [];
    }
  }

  private text(text: unknown, data: Record<string, unknown>): UIMessageChunk[] {
    if (typeof text !== 'string' || text === '') return [];
    const out = this.ensureStarted();
    let id = str(data.id);
    if (id === undefined) {
      if (this.autoText === null) {
        this.autoText = `${this.runId}-text-${this.autoTexts++}`;
        out.push({ type: 'text-start', id: this.autoText });
      }
      id = this.autoText;
    } else {
      out.push(...this.closeAutoText());
      if (!this.openTexts.has(id)) {
        this.openTexts.add(id);
        out.push({ type: 'text-start', id });
      }
    }
    out.push({ type: 'text-delta', id, delta: text, ...extras(data, ['providerMetadata']) } as UIMessageChunk);
    return out;
  }

  private toolCall(data: Record<string, unknown>): UIMessageChunk[] {
    const toolCallId = str(data.id, data.toolCallId, data.tool_call_id) ?? `${this.runId}-call-${this.autoCalls++}`;
    this.calls.add(toolCallId);
    this.lastCall = toolCallId;
    const input = data.input !== undefined ? data.input : data.args !== undefined ? data.args : (data.arguments ?? {});
    return this.emit({
      type: 'tool-input-available',
      toolCallId,
      toolName: str(data.name, data.toolName, data.tool) ?? 'tool',
      input,
      ...extras(data, TOOL_CALL_EXTRAS),
    } as UIMessageChunk);
  }

  private toolResult(raw: unknown, data: Record<string, unknown>): UIMessageChunk[] {
    const toolCallId = str(data.id, data.toolCallId, data.tool_call_id) ?? this.lastCall;
    // The SDK refuses a result for a call it has not seen.
    if (toolCallId === null || !this.calls.has(toolCallId)) return [];
    if (typeof data.errorText === 'string' && !('output' in data) && !('result' in data)) {
      return this.emit({ type: 'tool-output-error', toolCallId, errorText: data.errorText, ...extras(data, TOOL_RESULT_EXTRAS) } as UIMessageChunk);
    }
    const output = 'output' in data ? data.output : 'result' in data ? data.result : raw;
    return this.emit({ type: 'tool-output-available', toolCallId, output: output ?? null, ...extras(data, TOOL_RESULT_EXTRAS) } as UIMessageChunk);
  }

  /** An event that is a chunk already (a piped SDK stream, or a command agent printing chunks). */
  private chunk(chunk: UIMessageChunk): UIMessageChunk[] {
    switch (chunk.type) {
      case 'start': {
        if (this.started) return [chunk];
        this.started = true;
        return [{ ...chunk, messageId: chunk.messageId ?? this.runId }];
      }
      case 'text-start':
        if (this.openTexts.has(chunk.id)) return [];
        this.openTexts.add(chunk.id);
        return this.emit(chunk);
      case 'text-end':
        if (!this.openTexts.delete(chunk.id)) return [];
        return this.emit(chunk);
      case 'tool-input-start':
      case 'tool-input-available':
      case 'tool-input-error':
        this.calls.add(chunk.toolCallId);
        this.lastCall = chunk.toolCallId;
        return this.emit(chunk);
      case 'tool-input-delta':
      case 'tool-output-available':
      case 'tool-output-error':
      case 'tool-output-denied':
      case 'tool-approval-request':
        return this.calls.has(chunk.toolCallId) ? this.emit(chunk) : [];
      case 'finish':
      case 'abort':
        this.finished = true;
        return this.emit(chunk);
      default:
        return this.emit(chunk);
    }
  }

  private emit(chunk: UIMessageChunk): UIMessageChunk[] {
    return [...this.ensureStarted(), ...this.closeAutoText(), chunk];
  }

  private end(last: UIMessageChunk): UIMessageChunk[] {
    const out = [...this.ensureStarted(), ...this.closeAutoText()];
    this.ended = true;
    if (last.type === 'error' || !this.finished) out.push(last);
    return out;
  }

  private ensureStarted(): UIMessageChunk[] {
    if (this.started) return [];
    this.started = true;
    return [{ type: 'start', messageId: this.runId }];
  }

  private closeAutoText(): UIMessageChunk[] {
    if (this.autoText === null) return [];
    const id = this.autoText;
    this.autoText = null;
    return [{ type: 'text-end', id }];
  }
}

// ---------------------------------------------------------------------------------------
// UI message chunks → output events

/**
 * The output event a UI message chunk is stored as: `text-delta` → `text` `{ text, id }`,
 * `tool-input-available` → `tool_call` `{ id, name, input, ... }`, `tool-output-available`
 * → `tool_result` `{ id, output, ... }` (the conventional types other readers, the console
 * and `persistOutput` understand), `error` → `agent_error` `{ errorText }` (runners cannot
 * emit `error`), any other chunk → an event of its own type with the rest as data.
 */
export function outputEventOfChunk(chunk: UIMessageChunk): { type: string; data: Record<string, unknown> } {
  const { type, ...rest } = chunk as { type: string } & Record<string, unknown>;
  switch (type) {
    case 'text-delta': {
      const { delta, ...more } = rest;
      return { type: 'text', data: { text: delta, ...more } };
    }
    case 'tool-input-available': {
      const { toolCallId, toolName, ...more } = rest;
      return { type: 'tool_call', data: { id: toolCallId, name: toolName, ...more } };
    }
    case 'tool-output-available': {
      const { toolCallId, ...more } = rest;
      return { type: 'tool_result', data: { id: toolCallId, ...more } };
    }
    case 'error':
      return { type: 'agent_error', data: rest };
    default:
      return { type, data: rest };
  }
}

/** How many emits may be in flight before the pipe waits for their commit. */
const EMIT_WINDOW = 64;

/**
 * Writes a UI message stream (`streamText(...).toUIMessageStream({ ... })`, or any stream of
 * `UIMessageChunk`s) into a run as output events (`outputEventOfChunk`), so the reply is
 * durable and any instance can stream it (`resumeStream`, `streamRun`). Resolves once every
 * event is committed; rejects when an emit is refused (the run ended) or the stream fails.
 * Give the model call `abortSignal: run.signal` so that an interrupt stops it.
 */
export async function pipeUIMessageStreamToRun(
  run: Pick<RunContext, 'emit'>,
  stream: ReadableStream<UIMessageChunk> | AsyncIterable<UIMessageChunk>,
): Promise<void> {
  const inFlight: Promise<unknown>[] = [];
  // Each emit is handled at once (no unhandled rejection); a refusal is rethrown at the next chunk or at the end.
  const refused: { error?: unknown } = {};
  for await (const chunk of iterate(stream)) {
    if ('error' in refused) throw refused.error;
    const committed = run.emit(outputEventOfChunk(chunk));
    inFlight.push(committed.catch((error: unknown) => void ('error' in refused || (refused.error = error))));
    if (inFlight.length >= EMIT_WINDOW) await inFlight.shift();
  }
  await Promise.all(inFlight);
  if ('error' in refused) throw refused.error;
}

async function* iterate<T>(stream: ReadableStream<T> | AsyncIterable<T>): AsyncGenerator<T> {
  if (!('getReader' in stream)) return yield* stream;
  const reader = stream.getReader();
  let done = false;
  try {
    for (;;) {
      const next = await reader.read();
      if (next.done) {
        done = true;
        return;
      }
      yield next.value;
    }
  } finally {
    // Left early (an emit was refused): stop the producer, which stops the model call.
    if (!done) await reader.cancel().catch(() => undefined);
    reader.releaseLock();
  }
}
