/**
 * What the core reports for traces. Like telemetry.ts for metrics, the core imports no
 * tracing library: it names the spans (session operations, the relay's publish) and the
 * adapters name theirs (SQL statements, Redis commands, NATS publishes); an adapter
 * (src/adapters/opentelemetry/) turns them into OpenTelemetry spans.
 *
 * Off by default: `NO_TRACING` is the port, and every traced component asks `enabled` once
 * where it is built and, when it is false, keeps its untraced code path as it was (no
 * wrapper, no closure, no attribute object per call).
 */

export type SpanKind = 'internal' | 'server' | 'client' | 'producer' | 'consumer';

/**
 * Span attributes. Never values of a caller's data: no API key, metadata, item content, run
 * input, SQL parameter or Redis value, only names, ids and counts.
 */
export type SpanAttributes = Record<string, string | number | boolean>;

/** Request or message headers, as they arrive (a W3C `traceparent` among them) or are sent. */
export type TraceCarrier = Record<string, string | string[] | undefined>;

export interface SpanOptions {
  kind?: SpanKind;
  attributes?: SpanAttributes;
  /**
   * Trace this only inside a span already going (a dependency call made for a traced
   * operation); a call made by background work alone (a heartbeat, a poll) is not traced.
   */
  requireParent?: boolean;
  /** Headers of an incoming request: a trace context there is the span's parent. */
  remoteParent?: TraceCarrier;
  /**
   * Start a trace of its own, linked to the current span: for work that outlives the request
   * that caused it (a run executing in the background).
   */
  newTrace?: boolean;
}

/** The span being recorded, as the code inside it sees it. */
export interface SpanHandle {
  setAttribute(key: string, value: string | number | boolean): void;
  /** Marks the span failed with `error.type` = `type` (an error code, a status code). */
  fail(type: string): void;
}

/** A span the caller ends: for work no single function encloses (an HTTP request across hooks). */
export interface OpenSpan extends SpanHandle {
  /** Calls `fn` at once with this span as the current one; what `fn` starts continues in it. */
  enter<T>(fn: () => T): T;
  end(): void;
}

export interface Tracing {
  /** False for NO_TRACING: components then skip tracing entirely. */
  readonly enabled: boolean;
  /**
   * Runs `fn` inside a new span (a child of the current one) and ends it when `fn` settles; a
   * rejection marks it failed with the error's `code` (or name), never its message.
   */
  span<T>(name: string, options: SpanOptions, fn: (span: SpanHandle) => Promise<T>): Promise<T>;
  /** Starts a span the caller ends (see OpenSpan). */
  start(name: string, options: SpanOptions): OpenSpan;
  /** Writes the current trace context into outgoing headers (a published message). */
  inject(carrier: Record<string, string>): void;
}

const NO_SPAN: OpenSpan = Object.freeze({
  setAttribute: () => undefined,
  fail: () => undefined,
  enter: <T>(fn: () => T): T => fn(),
  end: () => undefined,
});

/** Tracing off: every span is a direct call. */
export const NO_TRACING: Tracing = Object.freeze({
  enabled: false,
  span: <T>(_name: string, _options: SpanOptions, fn: (span: SpanHandle) => Promise<T>): Promise<T> => fn(NO_SPAN),
  start: () => NO_SPAN,
  inject: () => undefined,
});

/** The failure type of an error: its stable `code` when it has one (AgentSessionsError, SQLSTATE), else its class name. */
export function errorType(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && code !== '') return code;
  const name = (err as { name?: unknown } | null)?.name;
  return typeof name === 'string' && name !== '' ? name : 'error';
}

/** Attribute names of this package (semantic conventions have none for sessions and runs). */
export const SESSION_ID = 'agent_sessions.session.id';
export const RUN_ID = 'agent_sessions.run.id';

/**
 * How one traced method names its span and what it records: the session id from the first
 * argument (when it is one), or from the result (a created session), and the run id.
 */
export interface TracedMethod {
  span: string;
  /** The first argument is the session id (default true). */
  idArgument?: boolean;
  /** The result is a session (its id) or a run (its id, and its session's). */
  result?: 'session' | 'run';
}

/**
 * Replaces methods of `target` (an instance) by ones that run inside a span each. With
 * tracing off it changes nothing: the instance keeps its prototype's methods as they are.
 */
export function traceMethods<T extends object>(target: T, tracing: Tracing, methods: Readonly<Record<string, TracedMethod>>): void {
  if (!tracing.enabled) return;
  const self = target as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
  for (const [name, traced] of Object.entries(methods)) {
    const original = self[name];
    if (typeof original !== 'function') throw new Error(`traceMethods: no method ${name}`);
    const method = original.bind(target);
    const idArgument = traced.idArgument ?? true;
    self[name] = (...args: unknown[]) => {
      const attributes: SpanAttributes = {};
      if (idArgument && typeof args[0] === 'string') attributes[SESSION_ID] = args[0];
      return tracing.span(traced.span, { attributes }, async (span) => {
        const result = await method(...args);
        if (traced.result !== undefined && result !== null && typeof result === 'object') {
          const r = result as { id?: unknown; sessionId?: unknown };
          if (traced.result === 'session' && typeof r.id === 'string') span.setAttribute(SESSION_ID, r.id);
          if (traced.result === 'run' && typeof r.id === 'string') span.setAttribute(RUN_ID, r.id);
        }
        return result;
      });
    };
  }
}
