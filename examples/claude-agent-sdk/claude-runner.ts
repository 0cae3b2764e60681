/**
 * The Claude Agent SDK (`@anthropic-ai/claude-agent-sdk`) as an agent-sessions run: what
 * examples/claude-agent-sdk/agent.ts uses, what test/integrations/claude-agent-sdk.test.ts drives
 * with a scripted stand-in for `query`, and claude-agent-sdk.cli.test.ts with the real SDK and
 * CLI against a stub of the Messages API.
 *
 * - The SDK's session id is kept in the session's metadata (`claude_session_id`) as soon as the
 *   SDK announces it, and passed as `resume` on the next turn, whichever instance runs it.
 * - The transcript the SDK would keep only on the disk of the host that ran the turn
 *   (~/.claude/projects/…/<id>.jsonl) is mirrored into the session's items through the SDK's
 *   own `sessionStore` option, and loaded from there on resume: any instance can run the next
 *   turn (docs/integrations.md, "Claude Agent SDK").
 * - The turn runs as a run, so an interrupt from any instance fires `run.signal`, which calls
 *   `query.interrupt()` (the CLI ends the turn) and aborts the process if the turn has not
 *   ended after a grace period.
 * - SDK messages become output events: text deltas → `text`, tool_use blocks → `tool_call`,
 *   tool results → `tool_result`, the turn's result → `result`.
 */
import { randomUUID } from 'node:crypto';
import type {
  Options,
  Query,
  SDKMessage,
  SDKUserMessage,
  SessionKey,
  SessionStore,
  SessionStoreEntry,
} from '@anthropic-ai/claude-agent-sdk';
import type { CallOptions, NewOutputEvent, RunContext, Runner, SessionItem, Sessions } from '../../src/index.js'; // in your project: 'agent-sessions'

/** Where the SDK's session id is kept in the session's metadata. */
export const CLAUDE_SESSION_ID = 'claude_session_id';
/** The `type` of the items that hold the SDK's transcript lines. */
export const TRANSCRIPT_ITEM_TYPE = 'claude_transcript';

/**
 * What the runner needs of the SDK's `query`: the real one fits, and a test passes a scripted
 * stand-in. The prompt is an async iterable (streaming input), which `interrupt()` needs.
 */
export type QueryFunction = (params: { prompt: AsyncIterable<SDKUserMessage>; options: Options }) => AsyncIterable<SDKMessage> &
  Pick<Query, 'interrupt'>;

export interface ClaudeRunnerOptions {
  /** The SDK's `query`. */
  query: QueryFunction;
  /**
   * Options of every query (model, cwd, allowedTools, permissionMode, env, ...). The runner sets
   * `resume`, `abortController`, `includePartialMessages` and `sessionStore` itself.
   */
  options?: Omit<Options, 'resume' | 'continue' | 'sessionId' | 'abortController' | 'includePartialMessages' | 'sessionStore'>;
  /**
   * Mirror the SDK's transcript into the session (default true), so any instance can resume it.
   * false: the transcript stays on the disk of the host that ran the turn, and the session must
   * be routed to that host for its next turn.
   */
  storeTranscript?: boolean;
  /** How long `query.interrupt()` gets to end the turn before the process is aborted (default 5000 ms). */
  interruptGraceMs?: number;
  /** Largest tool result put in a `tool_result` event, in bytes of JSON (default 16 KiB); a longer one is cut and marked `truncated`. */
  maxToolResultBytes?: number;
}

/**
 * A runner for `sessions.runs.start(sessionId, runner, { input: prompt })`: one turn of the
 * Claude agent per run, resumed from the session's previous turn.
 */
export function claudeRunner(sessions: Sessions, config: ClaudeRunnerOptions): Runner {
  const graceMs = config.interruptGraceMs ?? 5_000;
  return async (run: RunContext) => {
    if (typeof run.input !== 'string' || run.input.length === 0) throw new Error('the run input is the prompt: a non-empty string');
    const call: CallOptions = { tenant: run.tenant };
    const session = await sessions.get(run.sessionId, call);
    const stored = session.metadata[CLAUDE_SESSION_ID];
    let claudeSessionId = typeof stored === 'string' ? stored : undefined;

    const abortController = new AbortController();
    const turn = settled();
    const q = config.query({
      prompt: oneTurn(run.input, turn.done),
      options: {
        ...config.options,
        ...(claudeSessionId ? { resume: claudeSessionId } : {}),
        abortController,
        includePartialMessages: true,
        ...(config.storeTranscript === false ? {} : { sessionStore: transcriptStore(sessions, run.sessionId, call) }),
      },
    });

    // An interrupt from any instance: ask the CLI to end the turn (it answers with a result),
    // and stop the process if it has not ended within the grace period.
    let killTimer: NodeJS.Timeout | undefined;
    const onAbort = () => {
      q.interrupt().catch(() => abortController.abort());
      killTimer = setTimeout(() => abortController.abort(), graceMs);
    };
    if (run.signal.aborted) onAbort();
    else run.signal.addEventListener('abort', onAbort, { once: true });

    const events = new ClaudeEventMapper({ maxToolResultBytes: config.maxToolResultBytes });
    let failure: string | null = null;
    try {
      for await (const message of q) {
        // The init message names the session first, the result again (also after an error).
        const announced = (message.type === 'system' && message.subtype === 'init') || message.type === 'result' ? message.session_id : undefined;
        if (announced && announced !== claudeSessionId) {
          claudeSessionId = announced;
          // At once, not at the end: a turn cut short by a crash is still resumed next time.
          await sessions.update(run.sessionId, { metadata: { [CLAUDE_SESSION_ID]: announced } }, call);
        }
        for (const event of events.map(message)) await run.emit(event);
        if (message.type === 'result') {
          turn.settle();
          await sessions.incrementCounters(
            run.sessionId,
            { totalTurns: 1, inputTokens: message.usage.input_tokens, outputTokens: message.usage.output_tokens },
            call,
          );
          if (message.is_error) failure = message.subtype === 'success' ? message.result : [message.subtype, ...message.errors].join(': ');
        }
      }
    } catch (err) {
      // An abort ends the iteration with the SDK's AbortError; the run ends `interrupted` anyway.
      if (!run.signal.aborted) throw err;
    } finally {
      clearTimeout(killTimer);
      run.signal.removeEventListener('abort', onAbort);
      turn.settle();
    }
    if (failure !== null && !run.signal.aborted) throw new Error(`Claude: ${failure}`);
  };
}

/** The prompt as streaming input: one user message, then stdin stays open until the turn ended. */
async function* oneTurn(prompt: string, done: Promise<void>): AsyncGenerator<SDKUserMessage> {
  yield { type: 'user', message: { role: 'user', content: prompt }, parent_tool_use_id: null };
  // Control requests (interrupt) travel on stdin, which the SDK closes when the prompt ends.
  await done;
}

function settled(): { done: Promise<void>; settle(): void } {
  let settle!: () => void;
  const done = new Promise<void>((resolve) => (settle = resolve));
  return { done, settle };
}

/**
 * SDK messages → output events. Text comes from the stream's deltas; an assistant message
 * whose text was not streamed (an API error the CLI reports as a message, say) gives its text
 * whole. A subagent's text stays inside it; its tool calls and results carry
 * `parent_tool_use_id`.
 */
export class ClaudeEventMapper {
  readonly #maxToolResultBytes: number;
  /** API message ids whose text arrived as deltas. */
  readonly #streamed = new Set<string>();
  #current: string | null = null;

  constructor(options: { maxToolResultBytes?: number } = {}) {
    this.#maxToolResultBytes = options.maxToolResultBytes ?? 16 * 1024;
  }

  map(message: SDKMessage): NewOutputEvent[] {
    switch (message.type) {
      case 'stream_event': {
        if (message.parent_tool_use_id !== null) return [];
        const event = message.event;
        if (event.type === 'message_start') this.#current = event.message.id;
        if (event.type !== 'content_block_delta' || event.delta.type !== 'text_delta') return [];
        if (this.#current !== null) this.#streamed.add(this.#current);
        return [{ type: 'text', data: { text: event.delta.text } }];
      }
      case 'assistant': {
        const parent = message.parent_tool_use_id;
        const out: NewOutputEvent[] = [];
        for (const block of message.message.content) {
          if (block.type === 'text' && parent === null && !this.#streamed.has(message.message.id)) {
            out.push({ type: 'text', data: { text: block.text } });
          } else if (block.type === 'tool_use' || block.type === 'server_tool_use' || block.type === 'mcp_tool_use') {
            out.push({ type: 'tool_call', data: { id: block.id, name: block.name, input: block.input, ...(parent ? { parent_tool_use_id: parent } : {}) } });
          }
        }
        return out;
      }
      case 'user': {
        const content = message.message.content;
        if (!Array.isArray(content)) return [];
        const parent = message.parent_tool_use_id;
        return content.flatMap((block): NewOutputEvent[] =>
          block.type === 'tool_result'
            ? [
                {
                  type: 'tool_result',
                  data: {
                    id: block.tool_use_id,
                    is_error: block.is_error ?? false,
                    ...bounded(block.content ?? '', this.#maxToolResultBytes),
                    ...(parent ? { parent_tool_use_id: parent } : {}),
                  },
                },
              ]
            : [],
        );
      }
      case 'result':
        return [
          {
            type: 'result',
            data: {
              subtype: message.subtype,
              is_error: message.is_error,
              num_turns: message.num_turns,
              duration_ms: message.duration_ms,
              total_cost_usd: message.total_cost_usd,
              usage: { input_tokens: message.usage.input_tokens, output_tokens: message.usage.output_tokens },
            },
          },
        ];
      default:
        return [];
    }
  }
}

/** `{ content }`, or its first `maxBytes` bytes of JSON as a string with `truncated: true` (output events are bounded). */
function bounded(content: unknown, maxBytes: number): { content: unknown; truncated?: true } {
  const json = JSON.stringify(content) ?? '';
  if (Buffer.byteLength(json) <= maxBytes) return { content };
  const text = typeof content === 'string' ? content : json;
  const { read } = new TextEncoder().encodeInto(text, new Uint8Array(maxBytes));
  return { content: text.slice(0, read), truncated: true };
}

/**
 * The SDK's `SessionStore` over one agent-sessions session: every transcript line becomes an
 * item `{ type: 'claude_transcript', client_id: '<claude session>/<subpath>/<uuid>', content:
 * <the line> }`. The line's uuid makes a retried append (or an `importSessionToStore` replay)
 * store nothing twice; a line without one gets a fresh id (appended, never merged). Appends run
 * one at a time, in call order. `projectKey` (the SDK's encoding of the working directory) is
 * ignored: the store belongs to the session, so a host with another working directory resumes
 * it too. Not implemented (optional in the contract): `listSessions` and `delete` — the
 * transcript lives and ends with the session (terminate, purge, erasure).
 */
export function transcriptStore(sessions: Sessions, sessionId: string, call: CallOptions = {}): SessionStore {
  const { itemsPerAppend, maxPageSize } = sessions.config.limits;
  let tail: Promise<void> = Promise.resolve();

  async function* transcriptItems(): AsyncGenerator<SessionItem & { clientId: string }> {
    let cursor: string | undefined;
    do {
      const page = await sessions.items.list(sessionId, { limit: maxPageSize, ...(cursor ? { cursor } : {}) }, call);
      for (const item of page.items) {
        if (item.type === TRANSCRIPT_ITEM_TYPE && item.clientId !== null) yield { ...item, clientId: item.clientId };
      }
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
  }

  async function write(key: SessionKey, entries: SessionStoreEntry[]): Promise<void> {
    const prefix = keyPrefix(key);
    // Batches within the append limit, a client id at most once per batch (a line written twice
    // in one call is replaced in place by the second batch, as two calls would do).
    let batch: { clientId: string; type: string; content: SessionStoreEntry }[] = [];
    const ids = new Set<string>();
    const flush = async () => {
      if (batch.length > 0) await sessions.items.append(sessionId, batch, call);
      batch = [];
      ids.clear();
    };
    for (const entry of entries) {
      const clientId = `${prefix}${typeof entry.uuid === 'string' && entry.uuid !== '' ? entry.uuid : randomUUID()}`;
      if (batch.length >= itemsPerAppend || ids.has(clientId)) await flush();
      batch.push({ clientId, type: TRANSCRIPT_ITEM_TYPE, content: entry });
      ids.add(clientId);
    }
    await flush();
  }

  return {
    append(key, entries) {
      const done = tail.then(() => write(key, entries));
      tail = done.catch(() => undefined);
      return done;
    },
    async load(key) {
      await tail.catch(() => undefined);
      const prefix = keyPrefix(key);
      const entries: SessionStoreEntry[] = [];
      for await (const item of transcriptItems()) {
        if (item.clientId.startsWith(prefix) && !item.clientId.slice(prefix.length).includes('/')) entries.push(item.content as SessionStoreEntry);
      }
      return entries.length > 0 ? entries : null;
    },
    async listSubkeys(key) {
      const prefix = `${key.sessionId}/`;
      const subpaths = new Set<string>();
      for await (const item of transcriptItems()) {
        if (!item.clientId.startsWith(prefix)) continue;
        const subpath = item.clientId.slice(prefix.length, item.clientId.lastIndexOf('/'));
        if (subpath !== '') subpaths.add(subpath);
      }
      return [...subpaths];
    },
  };
}

/** `<claude session>/<subpath>/`: the SDK's session ids are UUIDs, its subpaths `subagents/agent-<id>`. */
function keyPrefix(key: SessionKey): string {
  if (key.sessionId.includes('/')) throw new Error(`unexpected Claude session id ${JSON.stringify(key.sessionId)}`);
  return `${key.sessionId}/${key.subpath ?? ''}/`;
}
