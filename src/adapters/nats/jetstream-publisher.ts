/**
 * Publishes outbox events to NATS JetStream: subject `<prefix>.<tenant>.<type>` on one stream
 * (created, or updated to cover the subjects and a duplicate window of at least 10 minutes,
 * at start), header Nats-Msg-Id = event id so a republish inside the window is dropped by
 * the server and reported as a duplicate. Owns its connection; reconnects forever.
 */
import { connect, headers, nanos, type NatsConnection } from '@nats-io/transport-node';
import {
  jetstream,
  jetstreamManager,
  JetStreamApiError,
  type JetStreamClient,
  type JetStreamManager,
  type JetStreamPublishOptions,
  type StreamConfig,
} from '@nats-io/jetstream';
import { UnavailableError } from '../../core/errors.js';
import type { DependencyHealth, EventEnvelope, EventPublisher, HealthCheck, PublishOutcome } from '../../core/ports.js';
import { NO_TRACING, type SpanAttributes, type Tracing } from '../../core/tracing.js';

/** The smallest duplicate window the relay's crash recovery relies on. */
export const MIN_DUPLICATE_WINDOW_MS = 10 * 60 * 1000;
const STREAM_NOT_FOUND = 10059;

export interface JetStreamPublisherOptions {
  url: string;
  stream: string;
  subjectPrefix: string;
  /** How long one publish waits for the server's acknowledgement (ms). */
  publishTimeoutMs?: number;
  /** How long `ready()` waits for a first connection before going on without one (ms). */
  startWaitMs?: number;
  /** Connection name shown by the server (monitoring). */
  name?: string;
  onError?: (err: unknown) => void;
  /**
   * Each publish is a producer span (OpenTelemetry messaging conventions) whose context
   * travels in the message's `traceparent` header, so a consumer's trace continues it.
   */
  tracing?: Tracing;
}

/**
 * Event ids, tenants and types become subject tokens. Tenants may hold characters that mean
 * something in a subject ('.', '*', '>', whitespace); those are escaped as %XX so every
 * subject has exactly the tokens `<prefix>.<tenant>.<type...>`.
 */
export function subjectToken(value: string): string {
  return value.replace(/[^A-Za-z0-9_-]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`);
}

export function eventSubject(prefix: string, event: Pick<EventEnvelope, 'tenantId' | 'type'>): string {
  return `${prefix}.${subjectToken(event.tenantId)}.${event.type}`;
}

/** host and port of the first server of a NATS URL (never its credentials). */
function natsServer(url: string): { address: string; port: number } | null {
  try {
    const u = new URL(url.split(',')[0]?.trim() ?? '');
    return { address: u.hostname || 'localhost', port: Number(u.port || 4222) };
  } catch {
    return null;
  }
}

/** The wire form of an event (SPEC §8 envelope, snake_case like the HTTP API). */
export function eventWireJson(e: EventEnvelope): Record<string, unknown> {
  return { id: e.id, type: e.type, tenant_id: e.tenantId, session_id: e.sessionId, occurred_at: e.occurredAt, data: e.data };
}

export class JetStreamEventPublisher implements EventPublisher, HealthCheck {
  readonly name = 'nats';
  private readonly options: Required<Omit<JetStreamPublisherOptions, 'onError' | 'tracing'>> & Pick<JetStreamPublisherOptions, 'onError'>;
  private readonly tracing: Tracing;
  /** Attributes every publish span carries (the server as configured). */
  private readonly spanAttributes: SpanAttributes;
  private nc: NatsConnection | null = null;
  private js: JetStreamClient | null = null;
  private jsm: JetStreamManager | null = null;
  private connecting: Promise<void> | null = null;
  private connected = false;
  private streamReady: Promise<void> | null = null;
  private closed = false;
  private readonly availableListeners = new Set<() => void>();
  private readonly encoder = new TextEncoder();

  constructor(options: JetStreamPublisherOptions) {
    const { tracing, ...rest } = options;
    this.options = {
      publishTimeoutMs: 5_000,
      startWaitMs: 2_000,
      name: 'agent-sessions',
      ...rest,
    };
    this.tracing = tracing ?? NO_TRACING;
    this.spanAttributes = { 'messaging.system': 'nats', 'messaging.operation.type': 'send', 'messaging.operation.name': 'publish' };
    const server = natsServer(options.url);
    if (server) Object.assign(this.spanAttributes, { 'server.address': server.address, 'server.port': server.port });
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(options.stream)) throw new Error(`invalid NATS stream name ${options.stream}`);
    if (!/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(options.subjectPrefix)) {
      throw new Error(`invalid NATS subject prefix ${options.subjectPrefix}`);
    }
  }

  /**
   * Connects and makes sure the stream exists. A server that cannot be reached does not stop
   * the service (events wait in the outbox; the client keeps reconnecting); a server that is
   * reachable but refuses the stream (JetStream off, conflicting subjects) is a configuration
   * error and fails the start.
   */
  async ready(): Promise<void> {
    this.connecting ??= this.connect();
    let timer: NodeJS.Timeout | undefined;
    const reachable = await Promise.race([
      this.connecting.then(() => true),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), this.options.startWaitMs);
      }),
    ]).finally(() => clearTimeout(timer));
    if (!reachable) {
      this.options.onError?.(new UnavailableError(`NATS at ${this.options.url} is not reachable yet; events wait in the outbox`));
      return;
    }
    if (this.connected) await this.ensureStream();
  }

  onAvailable(listener: () => void): () => void {
    this.availableListeners.add(listener);
    return () => this.availableListeners.delete(listener);
  }

  async publish(event: EventEnvelope, opts: { signal?: AbortSignal } = {}): Promise<PublishOutcome> {
    opts.signal?.throwIfAborted();
    if (!this.connected || !this.js) throw new UnavailableError('NATS is not connected');
    await this.ensureStream();
    const subject = eventSubject(this.options.subjectPrefix, event);
    const body = this.encoder.encode(JSON.stringify(eventWireJson(event)));
    if (!this.tracing.enabled) return this.send(this.js, event, subject, body, null);
    // Named by the subject's pattern: one name per event type, not per tenant.
    const template = `${this.options.subjectPrefix}.{tenant}.${event.type}`;
    const attributes: SpanAttributes = {
      ...this.spanAttributes,
      'messaging.destination.name': subject,
      'messaging.destination.template': template,
      'messaging.message.id': String(event.id),
      'messaging.message.body.size': body.byteLength,
    };
    const js = this.js;
    return this.tracing.span(`publish ${template}`, { kind: 'producer', attributes }, () => {
      const carrier: Record<string, string> = {};
      this.tracing.inject(carrier);
      return this.send(js, event, subject, body, carrier);
    });
  }

  private async send(
    js: JetStreamClient,
    event: EventEnvelope,
    subject: string,
    body: Uint8Array,
    trace: Record<string, string> | null,
  ): Promise<PublishOutcome> {
    const options: Partial<JetStreamPublishOptions> = { msgID: String(event.id), timeout: this.options.publishTimeoutMs };
    if (trace !== null && Object.keys(trace).length > 0) {
      const h = headers();
      for (const [name, value] of Object.entries(trace)) h.set(name, value);
      options.headers = h;
    }
    try {
      const ack = await js.publish(subject, body, options);
      return { id: event.id, duplicate: ack.duplicate };
    } catch (err) {
      // The stream may have been deleted, or the server restarted without its store.
      if (err instanceof JetStreamApiError && err.code === STREAM_NOT_FOUND) this.streamReady = null;
      if (!(err instanceof Error) || !/no responders/i.test(err.message)) throw new UnavailableError('NATS publish failed', err);
      this.streamReady = null;
      throw new UnavailableError('NATS publish failed: no stream answers the subject', err);
    }
  }

  async check(): Promise<DependencyHealth> {
    const started = performance.now();
    try {
      if (!this.nc || !this.connected) throw new Error('not connected');
      await this.nc.rtt();
      return { name: this.name, ok: true, latencyMs: performance.now() - started };
    } catch (err) {
      return { name: this.name, ok: false, latencyMs: performance.now() - started, error: (err as Error).message };
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.connecting?.catch(() => undefined);
    const nc = this.nc;
    this.nc = null;
    this.connected = false;
    await nc?.close().catch(() => undefined);
  }

  private async connect(): Promise<void> {
    try {
      const nc = await connect({
        servers: this.options.url,
        name: this.options.name,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 500,
        // Keep trying when the server is down at start instead of failing the service.
        waitOnFirstConnect: true,
        timeout: 2_000,
      });
      if (this.closed) {
        await nc.close();
        return;
      }
      this.nc = nc;
      this.js = jetstream(nc);
      this.jsm = await jetstreamManager(nc, { checkAPI: false });
      this.connected = true;
      void this.watch(nc);
      // A relay that gave up waiting at start tries again now.
      for (const fn of this.availableListeners) fn();
    } catch (err) {
      throw new UnavailableError(`cannot connect to NATS at ${this.options.url}`, err);
    }
  }

  private async watch(nc: NatsConnection): Promise<void> {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') {
        this.connected = false;
      } else if (s.type === 'reconnect') {
        this.connected = true;
        // The server may have come back without its store: check the stream again.
        this.streamReady = null;
        for (const fn of this.availableListeners) fn();
      }
    }
  }

  private ensureStream(): Promise<void> {
    this.streamReady ??= this.setupStream().catch((err: unknown) => {
      this.streamReady = null;
      throw err;
    });
    return this.streamReady;
  }

  private async setupStream(): Promise<void> {
    const jsm = this.jsm;
    if (!jsm) throw new UnavailableError('NATS is not connected');
    const { stream, subjectPrefix } = this.options;
    const subject = `${subjectPrefix}.>`;
    const window = nanos(MIN_DUPLICATE_WINDOW_MS);
    let existing: StreamConfig | null = null;
    try {
      existing = (await jsm.streams.info(stream)).config;
    } catch (err) {
      if (!(err instanceof JetStreamApiError && err.code === STREAM_NOT_FOUND)) throw err;
    }
    if (!existing) {
      await jsm.streams.add({ name: stream, subjects: [subject], duplicate_window: window });
      return;
    }
    const subjects = existing.subjects ?? [];
    const needsSubject = !subjects.includes(subject);
    const needsWindow = (existing.duplicate_window ?? 0) < window;
    if (needsSubject || needsWindow) {
      await jsm.streams.update(stream, {
        subjects: needsSubject ? [...subjects, subject] : subjects,
        duplicate_window: needsWindow ? window : existing.duplicate_window,
      });
    }
  }
}
