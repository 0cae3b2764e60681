/**
 * The core's Tracing port over the OpenTelemetry API (`@opentelemetry/api`, an optional peer
 * dependency: only this folder imports it). Spans go to the tracer provider given, else the
 * one registered globally (an SDK started before the server, e.g. `node --import ./otel.mjs`).
 * Without an SDK the API is a no-op and so is every span; exporting is the SDK's business.
 *
 * Parent and child spans are found through the OpenTelemetry context, so a context manager
 * must be registered (the Node SDK registers AsyncLocalStorageContextManager); without one,
 * every span would be a root, which is warned about once.
 */
import {
  context,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type Span,
  type SpanOptions as OtelSpanOptions,
  type TextMapGetter,
  type Tracer,
  type TracerProvider,
} from '@opentelemetry/api';
import type { OpenSpan, SpanHandle, SpanKind as CoreSpanKind, SpanOptions, TraceCarrier, Tracing } from '../../core/tracing.js';
import { errorType } from '../../core/tracing.js';

export interface OpenTelemetryTracingOptions {
  /** Where spans go; default: the globally registered provider (`trace.getTracerProvider()`). */
  tracerProvider?: TracerProvider;
}

/** The instrumentation scope spans are recorded under. */
export const TRACER_NAME = 'agent-sessions';

const KINDS: Readonly<Record<CoreSpanKind, SpanKind>> = {
  internal: SpanKind.INTERNAL,
  server: SpanKind.SERVER,
  client: SpanKind.CLIENT,
  producer: SpanKind.PRODUCER,
  consumer: SpanKind.CONSUMER,
};

/** Reads headers as Node gives them (lowercase names; a repeated header as an array). */
const headerGetter: TextMapGetter<TraceCarrier> = {
  keys: (carrier) => Object.keys(carrier),
  get: (carrier, key) => carrier[key.toLowerCase()],
};

let warnedNoContextManager = false;

/** Whether a context manager carries the context into callbacks (the no-op one does not). */
function contextManagerRegistered(): boolean {
  const key = Symbol('agent-sessions probe');
  return context.with(ROOT_CONTEXT.setValue(key, true), () => context.active().getValue(key) === true);
}

/**
 * Tracing through OpenTelemetry: `createSessions({ tracing: openTelemetryTracing() })` (see
 * docs/observability.md).
 */
export function openTelemetryTracing(options: OpenTelemetryTracingOptions = {}): Tracing {
  if (!contextManagerRegistered() && !warnedNoContextManager) {
    warnedNoContextManager = true;
    process.emitWarning(
      'agent-sessions tracing: no OpenTelemetry context manager is registered, so spans will not nest; ' +
        'start the OpenTelemetry Node SDK first, or register AsyncLocalStorageContextManager',
      { code: 'AGENT_SESSIONS_OTEL_CONTEXT' },
    );
  }
  return new OpenTelemetryTracing((options.tracerProvider ?? trace.getTracerProvider()).getTracer(TRACER_NAME));
}

class OpenTelemetryTracing implements Tracing {
  readonly enabled = true;

  constructor(private readonly tracer: Tracer) {}

  span<T>(name: string, options: SpanOptions, fn: (span: SpanHandle) => Promise<T>): Promise<T> {
    const parent = this.parentOf(options);
    if (parent === null) return fn(UNTRACED);
    const span = this.tracer.startSpan(name, this.spanOptions(options), parent);
    const handle = new SpanRecord(span);
    return context.with(trace.setSpan(parent, span), async () => {
      try {
        return await fn(handle);
      } catch (err) {
        handle.fail(errorType(err));
        throw err;
      } finally {
        span.end();
      }
    });
  }

  start(name: string, options: SpanOptions): OpenSpan {
    const parent = this.parentOf(options);
    if (parent === null) return UNTRACED;
    const span = this.tracer.startSpan(name, this.spanOptions(options), parent);
    return new SpanRecord(span, trace.setSpan(parent, span));
  }

  inject(carrier: Record<string, string>): void {
    propagation.inject(context.active(), carrier);
  }

  /** The context a new span starts in, or null when it is not to be traced. */
  private parentOf(options: SpanOptions): Context | null {
    if (options.remoteParent !== undefined) return propagation.extract(context.active(), options.remoteParent, headerGetter);
    if (options.newTrace) return ROOT_CONTEXT;
    const active = context.active();
    if (options.requireParent && trace.getSpan(active) === undefined) return null;
    return active;
  }

  private spanOptions(options: SpanOptions): OtelSpanOptions {
    const out: OtelSpanOptions = { kind: KINDS[options.kind ?? 'internal'] };
    if (options.attributes) out.attributes = options.attributes as Attributes;
    if (options.newTrace) {
      // The span that caused this work, if any, is linked: one click from a request to its run.
      const cause = trace.getSpan(context.active())?.spanContext();
      if (cause && trace.isSpanContextValid(cause)) out.links = [{ context: cause }];
    }
    return out;
  }
}

class SpanRecord implements OpenSpan {
  constructor(
    private readonly span: Span,
    private readonly context: Context | null = null,
  ) {}

  setAttribute(key: string, value: string | number | boolean): void {
    this.span.setAttribute(key, value);
  }

  fail(type: string): void {
    this.span.setAttribute('error.type', type);
    // The description is the type too: an error's message may quote a caller's values.
    this.span.setStatus({ code: SpanStatusCode.ERROR, message: type });
  }

  enter<T>(fn: () => T): T {
    return this.context === null ? fn() : context.with(this.context, fn);
  }

  end(): void {
    this.span.end();
  }
}

/** What a call that is not traced (no parent where one is required) hands its function. */
const UNTRACED: OpenSpan = Object.freeze({
  setAttribute: () => undefined,
  fail: () => undefined,
  enter: <T>(fn: () => T): T => fn(),
  end: () => undefined,
});
