/**
 * `agent-sessions/openai-agents`: a `Session` of the OpenAI Agents SDK (`@openai/agents`)
 * whose history lives in agent-sessions, through the library or the HTTP client:
 *
 *   const session = new AgentSessionsSession({ client, sessionId: 'conv_42' });
 *   await run(agent, 'What is the weather in Paris?', { session });
 *
 * Each SDK item is stored whole as an item's `content`, with the item's `role` (messages) and
 * `type`, so `last_turns` finds the turns (a turn starts at a user message). The item's own
 * `id` is never used as `client_id`: some models give every item the same placeholder id.
 *
 * Only types come from `@openai/agents` and from the rest of this package: the module loads
 * nothing at run time, so the SDK stays an optional peer.
 */
import type { AgentInputItem, Session } from '@openai/agents';
import type { Sessions } from '../app/sessions.js';
import type { AgentSessionsClient, PutSessionJson } from '../client/index.js';
import type { CreateSessionInput } from '../core/types.js';

interface CommonOptions {
  /** The session's id: yours (`[A-Za-z0-9_:-][A-Za-z0-9._:-]{0,127}`), created on first use. */
  sessionId: string;
  /** Items per page when reading the history (default: the library's MAX_PAGE_SIZE, or 100 over HTTP). */
  pageSize?: number;
}

/** Over the library: `{ sessions, sessionId, tenant? }`. */
export interface LibrarySessionOptions extends CommonOptions {
  sessions: Pick<Sessions, 'ensure' | 'items' | 'config'>;
  /** The tenant the session belongs to (default "default"). */
  tenant?: string;
  /** The session's fields when the first call creates it. */
  createWith?: Omit<CreateSessionInput, 'id'>;
}

/** Over HTTP: `{ client, sessionId }`; the tenant is the client's API key's. */
export interface ClientSessionOptions extends CommonOptions {
  client: Pick<AgentSessionsClient, 'getOrCreate' | 'items'>;
  /** The body of `PUT /v1/sessions/{id}` when the first call creates the session. */
  createWith?: PutSessionJson;
}

export type AgentSessionsSessionOptions = LibrarySessionOptions | ClientSessionOptions;

/** An item as the adapter stores it: the same in the library and on the wire (no client id). */
interface StoredItem {
  role?: string;
  type: string;
  content: unknown;
}

/** One page of contents, in the order asked, and where the next one starts. */
interface ContentPage {
  contents: unknown[];
  next: string | null;
}

/** What the adapter needs of a store, implemented over the library and over the client. */
interface History {
  readonly pageSize: number;
  ensure(): Promise<void>;
  append(items: StoredItem[]): Promise<void>;
  page(order: 'asc' | 'desc', limit: number, cursor: string | null): Promise<ContentPage>;
  /** The removed item's content, or undefined when there was none. */
  pop(): Promise<unknown>;
  clear(): Promise<void>;
}

/** The most items one append takes over HTTP (the API's schema). */
const HTTP_APPEND_MAX = 100;
const HTTP_PAGE_SIZE = 100;

function libraryHistory(o: LibrarySessionOptions): History {
  const { sessions, sessionId: id } = o;
  const opts = { tenant: o.tenant };
  const chunk = sessions.config.limits.itemsPerAppend;
  return {
    pageSize: o.pageSize ?? sessions.config.limits.maxPageSize,
    ensure: async () => void (await sessions.ensure(id, o.createWith, opts)),
    append: async (items) => {
      for (let at = 0; at < items.length; at += chunk) await sessions.items.append(id, items.slice(at, at + chunk), opts);
    },
    page: async (order, limit, cursor) => {
      const page = await sessions.items.list(id, { order, limit, cursor: cursor ?? undefined }, opts);
      return { contents: page.items.map((i) => i.content), next: page.nextCursor };
    },
    pop: async () => (await sessions.items.pop(id, opts)).item?.content,
    clear: async () => void (await sessions.items.clear(id, opts)),
  };
}

function clientHistory(o: ClientSessionOptions): History {
  const { client, sessionId: id } = o;
  return {
    pageSize: o.pageSize ?? HTTP_PAGE_SIZE,
    ensure: async () => void (await client.getOrCreate(id, o.createWith)),
    append: async (items) => {
      for (let at = 0; at < items.length; at += HTTP_APPEND_MAX) await client.items.append(id, items.slice(at, at + HTTP_APPEND_MAX));
    },
    page: async (order, limit, cursor) => {
      const page = await client.items.list(id, { order, limit, cursor: cursor ?? undefined });
      return { contents: page.items.map((i) => i.content), next: page.next_cursor };
    },
    pop: async () => (await client.items.pop(id)).item?.content,
    clear: async () => void (await client.items.clear(id)),
  };
}

/**
 * An SDK item as a stored item: the item whole (as JSON, the same whichever way it is
 * stored), its `role` when it has one and its `type` (a message given as `{ role, content }`
 * has none: `message`). No `client_id`: see the module's comment.
 */
function itemForStore(item: AgentInputItem): StoredItem {
  // Bytes (the SDK lets image and file data be a Uint8Array or a Buffer) become base64, which
  // the SDK takes for the same data; JSON alone would make them {"0":137,...}.
  const content = JSON.parse(JSON.stringify(item, bytesAsBase64)) as Record<string, unknown>;
  const role = typeof content.role === 'string' && content.role !== '' ? content.role : undefined;
  const type = typeof content.type === 'string' && content.type !== '' ? content.type : 'message';
  return role === undefined ? { type, content } : { role, type, content };
}

function bytesAsBase64(this: unknown, key: string, value: unknown): unknown {
  // A Buffer's own toJSON runs before the replacer sees it: read the holder's raw value.
  const raw = (this as Record<string, unknown>)[key];
  if (ArrayBuffer.isView(raw)) return Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('base64');
  return value;
}

function isSessionNotFound(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === 'session_not_found';
}

/**
 * The OpenAI Agents SDK's `Session` over agent-sessions. The session is got or created
 * (`ensure` / `PUT /v1/sessions/{id}`) on the first call, once per instance of this class,
 * and again if it was purged meanwhile; one that ended (terminated, expired) is not
 * revived, and `addItems` then rejects with code `session_ended`. Any number of processes
 * may hold one for the same id: appends get one order (the store's per-session seq).
 */
export class AgentSessionsSession implements Session {
  readonly #sessionId: string;
  readonly #history: History;
  #ready: Promise<void> | null = null;

  constructor(options: AgentSessionsSessionOptions) {
    this.#sessionId = options.sessionId;
    this.#history = 'client' in options ? clientHistory(options) : libraryHistory(options);
    if (!Number.isSafeInteger(this.#history.pageSize) || this.#history.pageSize < 1) {
      throw new RangeError(`pageSize must be a positive integer, got ${this.#history.pageSize}`);
    }
  }

  /** The session's id, once the session exists. */
  async getSessionId(): Promise<string> {
    await this.#ensure();
    return this.#sessionId;
  }

  /**
   * The history in chronological order: all of it, or with `limit` the latest `limit` items
   * (none for a limit of 0 or less).
   */
  async getItems(limit?: number): Promise<AgentInputItem[]> {
    const wanted = limit === undefined ? Infinity : Math.floor(limit);
    if (!(wanted >= 1)) return [];
    const contents = await this.#call(async () => {
      // The latest N are read newest first (then reversed); all of them, oldest first.
      const order = wanted === Infinity ? 'asc' : 'desc';
      const out: unknown[] = [];
      let cursor: string | null = null;
      do {
        const page = await this.#history.page(order, Math.min(this.#history.pageSize, wanted - out.length), cursor);
        out.push(...page.contents);
        cursor = page.next;
      } while (cursor !== null && out.length < wanted);
      return order === 'desc' ? out.reverse() : out;
    });
    return contents as AgentInputItem[];
  }

  /**
   * Appends the items in their order, in one write (more than the store takes at once, 100
   * by default, are split into several: another writer's items may then fall in between).
   */
  async addItems(items: AgentInputItem[]): Promise<void> {
    if (items.length === 0) return;
    const stored = items.map(itemForStore);
    await this.#call(() => this.#history.append(stored));
  }

  /** Removes the latest item and returns it; undefined when the history is empty. */
  async popItem(): Promise<AgentInputItem | undefined> {
    return (await this.#call(() => this.#history.pop())) as AgentInputItem | undefined;
  }

  /** Removes every item; the session itself (metadata, runs, counters) stays. */
  async clearSession(): Promise<void> {
    await this.#call(() => this.#history.clear());
  }

  #ensure(): Promise<void> {
    this.#ready ??= this.#history.ensure().catch((err: unknown) => {
      this.#ready = null;
      throw err;
    });
    return this.#ready;
  }

  /** Runs `op` on an existing session; creates it again and retries once if it was purged. */
  async #call<T>(op: () => Promise<T>): Promise<T> {
    await this.#ensure();
    try {
      return await op();
    } catch (err) {
      if (!isSessionNotFound(err)) throw err;
      this.#ready = null;
      await this.#ensure();
      return op();
    }
  }
}
