/**
 * A typed HTTP client for the v1 API, on the platform's fetch (no dependency). It speaks the
 * wire format (snake_case bodies, the server's own schema types); errors become
 * `AgentSessionsHttpError` with the server's stable `code`; output streams and the event
 * feed are async iterators that resume after a dropped connection and close it on `break`.
 *
 *   const client = new AgentSessionsClient({ baseUrl: 'http://127.0.0.1:8080', apiKey });
 *   const s = await client.create({ user_id: 'alice' });
 *   await client.runs.start(s.id, { input: 'hello' });
 *   for await (const e of client.runs.stream(s.id)) console.log(e.seq, e.type, e.data);
 */
import { sleep } from '../core/abort.js';
import { AgentSessionsHttpError, parseRetryAfter } from './errors.js';
import { parseSse, type SseMessage } from './sse.js';
import type {
  ApiKeyJson,
  AppendItemsJson,
  BatchDeleteJson,
  BatchGetJson,
  ClearJson,
  CountersJson,
  CreatedKeyJson,
  CreateKeyJson,
  CreateSessionJson,
  PutSessionJson,
  EventJson,
  ForkSessionJson,
  IfBusyJson,
  InputSentJson,
  ItemJson,
  ItemPageJson,
  KeyListJson,
  ErasedJson,
  ListItemsQueryJson,
  ListSessionsQueryJson,
  NewItemJson,
  OutputEventJson,
  PopJson,
  ProblemJson,
  ReadyJson,
  RunJson,
  RunPageJson,
  StartedRunJson,
  SessionJson,
  SessionPageJson,
  StatsJson,
  UpdateSessionJson,
} from './types.js';

export type FetchFunction = typeof globalThis.fetch;

export interface AgentSessionsClientOptions {
  /** Where the server is, e.g. `http://127.0.0.1:8080` (a path prefix is kept). */
  baseUrl: string | URL;
  /** Sent as `Authorization: Bearer <key>`; omit for a `--no-auth` server. */
  apiKey?: string;
  /** A fetch implementation (default: the global one). */
  fetch?: FetchFunction;
  /**
   * Longest wait for one request, response body included (default 30 s; 0 = none). For
   * streams it bounds the wait for each connection to open, not the stream itself.
   */
  timeoutMs?: number;
  /** Headers sent with every request. */
  headers?: Record<string, string>;
}

export interface RequestOptions {
  signal?: AbortSignal;
  /** Overrides the client's `timeoutMs` for this call. */
  timeoutMs?: number;
  /**
   * Sent as `Idempotency-Key` on a POST (every POST but admin key creation takes one): the
   * server executes the call once per key and replays its first 2xx answer to a retry for
   * 24 h, so a POST retried after a lost answer (a counter increment, a run start) does not
   * happen twice. 1 to 255 printable ASCII characters; use a fresh one (a UUID) per call and
   * the same one for its retries.
   */
  idempotencyKey?: string;
}

/** A conditional write: `If-Match`, from a revision or given as is (`"3"`, `*`). */
export interface WriteRequestOptions extends RequestOptions {
  /**
   * Fails with 409 `version_conflict` unless the session is at this revision (its `revision`,
   * which only writes to its own fields change; appending items does not).
   */
  expectedRevision?: number;
  /** A raw If-Match value (an ETag the server sent); `expectedRevision` wins when both are given. */
  ifMatch?: string;
}

export interface StreamRequestOptions {
  /** Stops the stream; the iterator then rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Longest wait for each connection to open (default: the client's `timeoutMs`). */
  timeoutMs?: number;
  /**
   * Reconnects (with Last-Event-ID, so nothing is lost or repeated) after this many
   * consecutive failures at most, then rejects with the last error (default 10; 0 = never).
   */
  maxReconnects?: number;
  /**
   * A connection that brings nothing (no event, no heartbeat) for this long is taken for dead
   * (a half-open connection after a NAT or balancer dropped it) and reconnected. The server
   * sends a heartbeat every SSE_HEARTBEAT_MS (15 s by default). Default 45 s; 0 = never.
   */
  idleTimeoutMs?: number;
}

export interface RunStreamOptions extends StreamRequestOptions {
  /** Resume after this seq (the `id:` of the last event seen). Default: from the current run's start. */
  lastEventId?: number | string;
}

export interface EventFeedOptions extends StreamRequestOptions {
  /**
   * Events with an id greater than this. Default: only events committed from now on; a
   * reconnect before the first event then starts from now again, so pass `after` (0 for
   * everything kept) when no event may be missed.
   */
  after?: number | string;
  /** Only these event types (`session.created`, `run.completed`, ...). */
  types?: readonly string[];
  /** Only this session's events. */
  sessionId?: string;
}

type Query = Record<string, string | number | boolean | readonly string[] | null | undefined>;

interface CallInit extends RequestOptions {
  query?: Query;
  body?: unknown;
  headers?: Record<string, string>;
}

interface StreamInit extends StreamRequestOptions {
  query?: Query;
  lastEventId?: string;
  /** The frame after which the server ends the stream for good (no reconnect). */
  isTerminal?: (m: SseMessage) => boolean;
  /** A frame that reports a server-side failure of the stream: reconnect. */
  isFailure?: (m: SseMessage) => boolean;
}

const DEFAULT_TIMEOUT_MS = 30_000;
const DEFAULT_MAX_RECONNECTS = 10;
const DEFAULT_IDLE_TIMEOUT_MS = 45_000;
const FIRST_RECONNECT_DELAY_MS = 250;
const MAX_RECONNECT_DELAY_MS = 5_000;

function id(value: string): string {
  return encodeURIComponent(value);
}

function ifMatchHeader(opts: WriteRequestOptions): Record<string, string> {
  if (opts.expectedRevision !== undefined) return { 'if-match': `"${opts.expectedRevision}"` };
  if (opts.ifMatch !== undefined) return { 'if-match': opts.ifMatch };
  return {};
}

/** The HTTP plumbing the resource groups share. */
class Transport {
  private readonly base: string;
  private readonly fetchFn: FetchFunction;
  /** A call's timeout unless it names its own (ms; 0: none). */
  readonly timeoutMs: number;
  private readonly headers: Record<string, string>;

  constructor(options: AgentSessionsClientOptions) {
    this.base = String(options.baseUrl).replace(/\/+$/, '');
    if (!/^https?:\/\//i.test(this.base)) throw new TypeError(`baseUrl must be an http(s) URL, got ${this.base}`);
    this.fetchFn = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.headers = {
      ...options.headers,
      ...(options.apiKey === undefined ? {} : { authorization: `Bearer ${options.apiKey}` }),
    };
  }

  url(path: string, query: Query = {}): string {
    const params = new URLSearchParams();
    for (const [name, value] of Object.entries(query)) {
      if (value === undefined || value === null) continue;
      if (Array.isArray(value)) for (const v of value) params.append(name, String(v));
      else params.append(name, String(value));
    }
    const qs = params.toString();
    return `${this.base}${path}${qs ? `?${qs}` : ''}`;
  }

  private signalFor(signal: AbortSignal | undefined, timeoutMs: number | undefined): AbortSignal | undefined {
    const ms = timeoutMs ?? this.timeoutMs;
    const signals = [signal, ms > 0 ? AbortSignal.timeout(ms) : undefined].filter((s): s is AbortSignal => s !== undefined);
    return signals.length <= 1 ? signals[0] : AbortSignal.any(signals);
  }

  /** One request; resolves to the parsed JSON body (undefined for 204), throws for any non-2xx. */
  async call<T>(method: string, path: string, init: CallInit = {}): Promise<T> {
    const { status, body } = await this.send(method, path, init);
    if (status < 200 || status > 299) throw this.error(method, path, status, body.text, body.headers);
    return body.json as T;
  }

  /** One request; resolves to status and parsed body whatever the status. */
  async send(
    method: string,
    path: string,
    init: CallInit = {},
  ): Promise<{ status: number; body: { json: unknown; text: string; headers: Headers } }> {
    const url = this.url(path, init.query);
    const hasBody = init.body !== undefined;
    const res = await this.fetchFn(url, {
      method,
      headers: {
        accept: 'application/json',
        ...this.headers,
        ...(hasBody ? { 'content-type': 'application/json' } : {}),
        ...(init.idempotencyKey !== undefined && method === 'POST' ? { 'idempotency-key': init.idempotencyKey } : {}),
        ...init.headers,
      },
      body: hasBody ? JSON.stringify(init.body) : undefined,
      signal: this.signalFor(init.signal, init.timeoutMs),
    });
    const text = await res.text();
    let json: unknown;
    if (text !== '' && /json/i.test(res.headers.get('content-type') ?? '')) {
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
    }
    return { status: res.status, body: { json, text, headers: res.headers } };
  }

  error(method: string, path: string, status: number, text: string, headers: Headers): AgentSessionsHttpError {
    let problem: (ProblemJson & Record<string, unknown>) | null = null;
    try {
      const parsed = JSON.parse(text) as unknown;
      if (typeof parsed === 'object' && parsed !== null && typeof (parsed as { code?: unknown }).code === 'string') {
        problem = parsed as ProblemJson & Record<string, unknown>;
      }
    } catch {
      // Not JSON: a proxy's page, say. The status still tells what happened.
    }
    return new AgentSessionsHttpError({
      status,
      method,
      url: path,
      problem,
      retryAfter: parseRetryAfter(headers.get('retry-after')),
    });
  }

  /**
   * A Server-Sent Events stream that reconnects with Last-Event-ID when the connection drops
   * (or the server reports a failure of the stream) before `isTerminal` said it is over. A
   * non-retryable error answer (401, 404, ...) rejects at once. Leaving the loop closes the
   * connection.
   */
  async *stream(path: string, init: StreamInit): AsyncGenerator<SseMessage, void, undefined> {
    const { signal } = init;
    const maxReconnects = init.maxReconnects ?? DEFAULT_MAX_RECONNECTS;
    const timeoutMs = init.timeoutMs ?? this.timeoutMs;
    const idleTimeoutMs = init.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
    let lastEventId = init.lastEventId;
    let failures = 0;
    let retryMs = FIRST_RECONNECT_DELAY_MS;
    let lastError: unknown = null;
    for (;;) {
      signal?.throwIfAborted();
      const controller = new AbortController();
      const onAbort = () => controller.abort(signal?.reason);
      signal?.addEventListener('abort', onAbort, { once: true });
      let waitMs: number | null = null;
      try {
        const timer =
          timeoutMs > 0
            ? setTimeout(() => controller.abort(new DOMException(`${path}: the stream did not open in ${timeoutMs} ms`, 'TimeoutError')), timeoutMs)
            : undefined;
        let res: Response;
        try {
          res = await this.fetchFn(this.url(path, init.query), {
            headers: {
              accept: 'text/event-stream',
              ...this.headers,
              ...(lastEventId === undefined ? {} : { 'last-event-id': lastEventId }),
            },
            signal: controller.signal,
          });
        } finally {
          clearTimeout(timer);
        }
        if (!res.ok || !res.body) {
          const err = this.error('GET', path, res.status, await res.text().catch(() => ''), res.headers);
          if (!err.retryable) throw err;
          lastError = err;
          if (err.retryAfter !== undefined) waitMs = err.retryAfter * 1000;
        } else {
          lastError = new Error(`${path}: the stream ended before its last event`);
          let idle: NodeJS.Timeout | undefined;
          const active = () => {
            if (idleTimeoutMs <= 0) return;
            clearTimeout(idle);
            idle = setTimeout(
              () => controller.abort(new DOMException(`${path}: nothing received for ${idleTimeoutMs} ms`, 'TimeoutError')),
              idleTimeoutMs,
            );
          };
          const control = {
            onRetry: (ms: number) => void (retryMs = ms),
            onId: (id: string) => void (lastEventId = id),
            onActivity: active,
          };
          active();
          try {
            for await (const message of parseSse(res.body, control)) {
              if (init.isFailure?.(message)) {
                lastError = new Error(`${path}: the server ended the stream: ${message.data}`);
                break;
              }
              if (message.id !== undefined) lastEventId = message.id;
              failures = 0;
              yield message;
              if (init.isTerminal?.(message)) return;
            }
          } finally {
            clearTimeout(idle);
          }
        }
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        if (err instanceof AgentSessionsHttpError && !err.retryable) throw err;
        lastError = err;
      } finally {
        signal?.removeEventListener('abort', onAbort);
        controller.abort();
      }
      failures++;
      if (failures > maxReconnects) throw lastError;
      await sleep(waitMs ?? Math.min(retryMs * 2 ** (failures - 1), MAX_RECONNECT_DELAY_MS), signal);
    }
  }
}

function parseData<T>(message: SseMessage): T {
  return JSON.parse(message.data) as T;
}

/** Conversation history: `client.items.append(id, [...])`, `list`, `iterate`, `pop`, `clear`. */
export class ItemsClient {
  /** @internal */
  constructor(private readonly http: Transport) {}

  append(sessionId: string, items: NewItemJson[], opts: WriteRequestOptions = {}): Promise<AppendItemsJson> {
    return this.http.call('POST', `/v1/sessions/${id(sessionId)}/items`, { ...opts, body: { items }, headers: ifMatchHeader(opts) });
  }

  /**
   * A page by cursor, or the last N turns (`last_turns`); `order: 'desc'` reads newest first
   * (its `next_cursor` goes on towards older items). The latest N items in chronological
   * order: `(await list(id, { order: 'desc', limit: N })).items.reverse()`.
   */
  list(sessionId: string, query: ListItemsQueryJson = {}, opts: RequestOptions = {}): Promise<ItemPageJson> {
    return this.http.call('GET', `/v1/sessions/${id(sessionId)}/items`, { ...opts, query });
  }

  /** Every item in order (oldest first, or newest first with `order: 'desc'`), page by page. */
  async *iterate(sessionId: string, query: Omit<ListItemsQueryJson, 'cursor' | 'last_turns'> = {}, opts: RequestOptions = {}): AsyncGenerator<ItemJson, void, undefined> {
    let cursor: string | undefined;
    do {
      const page = await this.list(sessionId, { ...query, cursor }, opts);
      yield* page.items;
      cursor = page.next_cursor ?? undefined;
    } while (cursor !== undefined);
  }

  /** Removes the last item; `item` is null when there was none. */
  pop(sessionId: string, opts: WriteRequestOptions = {}): Promise<PopJson> {
    return this.http.call('DELETE', `/v1/sessions/${id(sessionId)}/items/last`, { ...opts, headers: ifMatchHeader(opts) });
  }

  clear(sessionId: string, opts: WriteRequestOptions = {}): Promise<ClearJson> {
    return this.http.call('DELETE', `/v1/sessions/${id(sessionId)}/items`, { ...opts, headers: ifMatchHeader(opts) });
  }
}

export interface StartRunRequestOptions extends RequestOptions {
  /**
   * When the session has a run: `reject` (409 session_busy, the default), `enqueue`, `interrupt`,
   * `steer`, `latest`, `merge` or `debounce` (with `debounceMs`); the answer's `decision` says what happened.
   */
  ifBusy?: IfBusyJson;
  /** With `ifBusy: 'debounce'`: the quiet time (1..60000 ms) after the last input before the run starts. */
  debounceMs?: number;
  /** Append the run's text output to the history as one assistant message when it completes or is interrupted. */
  persistOutput?: boolean;
  /** The agent to run (default: the server's AGENT_NAME); any instance serving it executes the run. */
  agent?: string;
  /** When the instance executing the run is lost: `fail` (default) or `retry` on another worker. */
  onOwnerLost?: 'fail' | 'retry';
  /** With `retry`: at most this many restarts (default 0). */
  maxRetries?: number;
}

/** Runs: start, list, get, interrupt, input, and the session's output as a resumable stream. */
export class RunsClient {
  /** @internal */
  constructor(private readonly http: Transport) {}

  /**
   * Starts a run of the server's agent, or follows `ifBusy`: the run the decision concerns (a
   * new one, or the one the input went into) with `decision`.
   */
  start(sessionId: string, input?: unknown, opts: StartRunRequestOptions = {}): Promise<StartedRunJson> {
    const body = {
      ...(input === undefined ? {} : { input }),
      ...(opts.ifBusy === undefined ? {} : { if_busy: opts.ifBusy }),
      ...(opts.debounceMs === undefined ? {} : { debounce_ms: opts.debounceMs }),
      ...(opts.persistOutput === undefined ? {} : { persist_output: opts.persistOutput }),
      ...(opts.agent === undefined ? {} : { agent: opts.agent }),
      ...(opts.onOwnerLost === undefined ? {} : { on_owner_lost: opts.onOwnerLost }),
      ...(opts.maxRetries === undefined ? {} : { max_retries: opts.maxRetries }),
    };
    return this.http.call('POST', `/v1/sessions/${id(sessionId)}/runs`, { ...opts, body });
  }

  /** A page of the session's runs, newest first. */
  list(sessionId: string, query: { cursor?: string; limit?: number } = {}, opts: RequestOptions = {}): Promise<RunPageJson> {
    return this.http.call('GET', `/v1/sessions/${id(sessionId)}/runs`, { ...opts, query });
  }

  get(sessionId: string, runId: string, opts: RequestOptions = {}): Promise<RunJson> {
    return this.http.call('GET', `/v1/sessions/${id(sessionId)}/runs/${id(runId)}`, opts);
  }

  /**
   * Interrupts the running run (or cancels the queued run `runId`), wherever it runs. With
   * `waitMs` (0..60,000) the server answers once the run ended or that time passed: the run's
   * `status` says which (`running`/`queued`: still going). The request's own timeout is
   * stretched to cover the wait.
   */
  interrupt(sessionId: string, opts: RequestOptions & { runId?: string; waitMs?: number } = {}): Promise<RunJson> {
    const { waitMs, runId, ...rest } = opts;
    const body = runId === undefined ? undefined : { run_id: runId };
    const query = waitMs === undefined ? undefined : { wait_ms: waitMs };
    const base = rest.timeoutMs ?? this.http.timeoutMs;
    // 0: no timeout at all; else at least the wait and some slack.
    const timeoutMs = waitMs === undefined || base === 0 ? rest.timeoutMs : Math.max(base, waitMs + 10_000);
    return this.http.call('POST', `/v1/sessions/${id(sessionId)}/interrupt`, { ...rest, body, query, timeoutMs });
  }

  /** Sends input to the running run (optionally only if it is `runId`). */
  sendInput(sessionId: string, input: unknown, opts: RequestOptions & { runId?: string } = {}): Promise<InputSentJson> {
    const body = { input, ...(opts.runId === undefined ? {} : { run_id: opts.runId }) };
    return this.http.call('POST', `/v1/sessions/${id(sessionId)}/input`, { ...opts, body });
  }

  /**
   * The session's output: events in seq order, ending after the run's terminal event (`done`
   * or `error`). A dropped connection is reopened after the last seq seen, so nothing is
   * lost or repeated. `break` closes the connection.
   */
  async *stream(sessionId: string, opts: RunStreamOptions = {}): AsyncGenerator<OutputEventJson, void, undefined> {
    const messages = this.http.stream(`/v1/sessions/${id(sessionId)}/stream`, {
      ...opts,
      lastEventId: opts.lastEventId === undefined ? undefined : String(opts.lastEventId),
      isTerminal: (m) => m.event === 'done' || m.event === 'error',
    });
    for await (const message of messages) yield parseData<OutputEventJson>(message);
  }
}

/** API keys under /v1/admin/keys (admin scope). */
export class KeysClient {
  /** @internal */
  constructor(private readonly http: Transport) {}

  /** Creates a key; `key` (the secret) is in this answer only. */
  create(body: CreateKeyJson, opts: RequestOptions = {}): Promise<CreatedKeyJson> {
    return this.http.call('POST', '/v1/admin/keys', { ...opts, body });
  }

  list(query: { tenant?: string } = {}, opts: RequestOptions = {}): Promise<KeyListJson> {
    return this.http.call('GET', '/v1/admin/keys', { ...opts, query });
  }

  revoke(keyId: string, opts: RequestOptions = {}): Promise<ApiKeyJson> {
    return this.http.call('DELETE', `/v1/admin/keys/${id(keyId)}`, opts);
  }
}

/** Erasure under /v1/admin (admin scope; a tenant erasure needs a root admin key). */
export class AdminClient {
  /** @internal */
  constructor(private readonly http: Transport) {}

  /** Erases every session of `userId` (in `query.tenant`, default the key's tenant); 409 `session_busy` while one has a run going. */
  eraseUser(userId: string, query: { tenant?: string } = {}, opts: RequestOptions = {}): Promise<ErasedJson> {
    return this.http.call('DELETE', `/v1/admin/users/${id(userId)}`, { ...opts, query });
  }

  /** Erases a whole tenant, its API keys included; 404 `tenant_not_found` when nothing names it. */
  eraseTenant(tenant: string, opts: RequestOptions = {}): Promise<ErasedJson> {
    return this.http.call('DELETE', `/v1/admin/tenants/${id(tenant)}`, opts);
  }
}

export class AgentSessionsClient {
  readonly items: ItemsClient;
  readonly runs: RunsClient;
  readonly keys: KeysClient;
  readonly admin: AdminClient;
  private readonly http: Transport;

  constructor(options: AgentSessionsClientOptions) {
    this.http = new Transport(options);
    this.items = new ItemsClient(this.http);
    this.runs = new RunsClient(this.http);
    this.keys = new KeysClient(this.http);
    this.admin = new AdminClient(this.http);
  }

  /** Creates a session (201); with `id`, 409 `session_exists` if it exists. */
  create(body: CreateSessionJson = {}, opts: RequestOptions = {}): Promise<SessionJson> {
    return this.http.call('POST', '/v1/sessions', { ...opts, body });
  }

  /**
   * The session with this id, created from `body` when it does not exist (PUT: 201 created,
   * 200 existing, the body then unused). Safe to retry.
   */
  getOrCreate(sessionId: string, body: PutSessionJson = {}, opts: RequestOptions = {}): Promise<SessionJson> {
    return this.http.call('PUT', `/v1/sessions/${id(sessionId)}`, { ...opts, body });
  }

  /** The session; its `revision` is the ETag the server sent. */
  get(sessionId: string, opts: RequestOptions = {}): Promise<SessionJson> {
    return this.http.call('GET', `/v1/sessions/${id(sessionId)}`, opts);
  }

  /** One page, newest first: filters `user_id`, `status`, `updated_after`, `q` (id prefix or part of the title); `cursor`, `limit`. */
  list(query: ListSessionsQueryJson = {}, opts: RequestOptions = {}): Promise<SessionPageJson> {
    return this.http.call('GET', '/v1/sessions', { ...opts, query });
  }

  /** Every session matching the filters, newest first, page by page. */
  async *iterate(query: Omit<ListSessionsQueryJson, 'cursor'> = {}, opts: RequestOptions = {}): AsyncGenerator<SessionJson, void, undefined> {
    let cursor: string | undefined;
    do {
      const page = await this.list({ ...query, cursor }, opts);
      yield* page.sessions;
      cursor = page.next_cursor ?? undefined;
    } while (cursor !== undefined);
  }

  /** Updates fields (metadata is merged; a null value removes a key); `expectedRevision` makes it conditional. */
  update(sessionId: string, patch: UpdateSessionJson, opts: WriteRequestOptions = {}): Promise<SessionJson> {
    return this.http.call('PATCH', `/v1/sessions/${id(sessionId)}`, { ...opts, body: patch, headers: ifMatchHeader(opts) });
  }

  /** Extends the session's expiry. */
  touch(sessionId: string, opts: WriteRequestOptions = {}): Promise<SessionJson> {
    return this.http.call('POST', `/v1/sessions/${id(sessionId)}/touch`, { ...opts, headers: ifMatchHeader(opts) });
  }

  /** Atomic increments, e.g. `{ total_turns: 1, input_tokens: 812 }`. */
  incrementCounters(sessionId: string, counters: CountersJson, opts: WriteRequestOptions = {}): Promise<SessionJson> {
    return this.http.call('POST', `/v1/sessions/${id(sessionId)}/counters`, { ...opts, body: counters, headers: ifMatchHeader(opts) });
  }

  /** Ends the session (status `terminated`); the row stays until retention purges it. */
  terminate(sessionId: string, opts: WriteRequestOptions & { reason?: string } = {}): Promise<SessionJson> {
    return this.http.call('DELETE', `/v1/sessions/${id(sessionId)}`, {
      ...opts,
      query: { reason: opts.reason },
      headers: ifMatchHeader(opts),
    });
  }

  /** Deletes the session with its items, runs and output, now. */
  async purge(sessionId: string, opts: RequestOptions = {}): Promise<void> {
    await this.http.call('DELETE', `/v1/sessions/${id(sessionId)}`, { ...opts, query: { purge: true } });
  }

  /** A new session with `parent_session_id` and a copy of the items. */
  fork(sessionId: string, body: ForkSessionJson = {}, opts: RequestOptions = {}): Promise<SessionJson> {
    return this.http.call('POST', `/v1/sessions/${id(sessionId)}/fork`, { ...opts, body });
  }

  /** Up to 100 sessions in one call; the ids not found (or not the caller's) are listed. */
  getMany(ids: string[], opts: RequestOptions = {}): Promise<BatchGetJson> {
    return this.http.call('POST', '/v1/sessions:batch-get', { ...opts, body: { ids } });
  }

  /** Terminates (or with `purge`, deletes) up to 100 sessions in one call. */
  deleteMany(ids: string[], opts: RequestOptions & { purge?: boolean; reason?: string } = {}): Promise<BatchDeleteJson> {
    const body = { ids, ...(opts.purge === undefined ? {} : { purge: opts.purge }), ...(opts.reason === undefined ? {} : { reason: opts.reason }) };
    return this.http.call('POST', '/v1/sessions:batch-delete', { ...opts, body });
  }

  /**
   * The tenant's event feed (session and run lifecycle), in id order. It does not end by
   * itself: stop it with `break` or the signal. A dropped connection is reopened after the
   * last event id seen.
   */
  async *events(opts: EventFeedOptions = {}): AsyncGenerator<EventJson, void, undefined> {
    const messages = this.http.stream('/v1/events', {
      ...opts,
      query: { type: opts.types, session_id: opts.sessionId },
      lastEventId: opts.after === undefined ? undefined : String(opts.after),
      // The feed reports a failure on its side as an `error` frame without an id.
      isFailure: (m) => m.event === 'error' && m.id === undefined,
    });
    for await (const message of messages) yield parseData<EventJson>(message);
  }

  /** Counts for the caller's tenant and this instance's cache, relay and sweep counters. */
  stats(opts: RequestOptions = {}): Promise<StatsJson> {
    return this.http.call('GET', '/v1/stats', opts);
  }

  /** Liveness: `{ status: 'ok' }`. */
  health(opts: RequestOptions = {}): Promise<{ status: string }> {
    return this.http.call('GET', '/health', opts);
  }

  /** Readiness with each dependency; answered also when not ready (`status: 'unavailable'`, HTTP 503). */
  async ready(opts: RequestOptions = {}): Promise<ReadyJson> {
    const { status, body } = await this.http.send('GET', '/ready', opts);
    const json = body.json as Partial<ReadyJson> | undefined;
    if ((status === 200 || status === 503) && json && Array.isArray(json.dependencies)) return json as ReadyJson;
    throw this.http.error('GET', '/ready', status, body.text, body.headers);
  }
}
