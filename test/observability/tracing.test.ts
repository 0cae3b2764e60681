/**
 * OpenTelemetry tracing with the SDK's in-memory exporter, over real sockets: an HTTP request
 * is a server span (a child of the caller's `traceparent`) whose child is the session
 * operation, whose children are its SQL statements and Redis commands; a run executes in a
 * trace of its own linked to its start; the relay's NATS publish is a producer span whose
 * context travels in the message; no attribute holds a key, metadata, item content or input;
 * and with tracing off nothing is traced at all. Embedded mode and PostgreSQL + Redis + NATS.
 */
import { context, propagation, trace, SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { openTelemetryTracing } from '../../src/adapters/otel/index.js';
import { loadTracing, TracingUnavailableError } from '../../src/cli/tracing.js';
import { NO_TRACING } from '../../src/core/tracing.js';
import { demoRunner } from '../../src/runners/demo.js';
import { buildApp } from '../../src/server/app.js';
import { createSessions, internals, type Sessions } from '../../src/internal.js';
import { deleteStream, waitFor } from '../events/support.js';
import { freshDatabase, requireServices, serviceUrl, uniqueKeyPrefix, uniqueNatsNames, type FreshDatabase } from '../setup/harness.js';

const ADMIN = 'admin-key-for-tracing-tests-0123';
const headers = { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' };
/** Values a span must never carry: they stand in for a caller's data. */
const SECRET_METADATA = 'metadata-value-never-in-a-span';
const SECRET_CONTENT = 'item-content-never-in-a-span';
const SECRET_INPUT = 'run-input-never-in-a-span';
const SECRET_PROMPT = 'system-prompt-never-in-a-span';
const SECRETS = [ADMIN, SECRET_METADATA, SECRET_CONTENT, SECRET_INPUT, SECRET_PROMPT];

// What an application does before it starts: an SDK with an exporter, a context manager, W3C propagation.
const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
propagation.setGlobalPropagator(new W3CTraceContextPropagator());
// Registered globally too: with tracing off, nothing may reach it even so.
trace.setGlobalTracerProvider(provider);

/** Every span finished in this file, for the scan of attributes at the end. */
const seen: ReadableSpan[] = [];
function spans(): ReadableSpan[] {
  const finished = exporter.getFinishedSpans();
  for (const s of finished) if (!seen.includes(s)) seen.push(s);
  return finished;
}
/** Empties the exporter, keeping what it held for the scan. */
function resetSpans(): void {
  spans();
  exporter.reset();
}
const parentOf = (s: ReadableSpan) => s.parentSpanContext?.spanId;
const childrenOf = (parent: ReadableSpan) => spans().filter((s) => parentOf(s) === parent.spanContext().spanId);
function one(name: string, where: (s: ReadableSpan) => boolean = () => true): ReadableSpan {
  const found = spans().filter((s) => s.name === name && where(s));
  expect(found.map((s) => s.name), `spans named ${name}`).toHaveLength(1);
  return found[0] as ReadableSpan;
}

/** A caller's trace context, as another service would send it. */
const CALLER_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const CALLER_SPAN = '00f067aa0ba902b7';
const traceparent = `00-${CALLER_TRACE}-${CALLER_SPAN}-01`;

async function listen(sessions: Sessions): Promise<{ app: FastifyInstance; base: string }> {
  const app = await buildApp({ sessions });
  return { app, base: await app.listen({ port: 0, host: '127.0.0.1' }) };
}

async function post(base: string, path: string, body: unknown, extra: Record<string, string> = {}): Promise<Record<string, unknown>> {
  const res = await fetch(`${base}${path}`, { method: 'POST', headers: { ...headers, ...extra }, body: JSON.stringify(body) });
  expect(res.status, `${path}: ${res.status}`).toBeLessThan(300);
  return (await res.json()) as Record<string, unknown>;
}

/** The server span of the request and the session operation under it. */
function request(name: string, operation: string): { server: ReadableSpan; op: ReadableSpan } {
  const server = one(name);
  expect(server.kind).toBe(SpanKind.SERVER);
  const op = childrenOf(server).find((s) => s.name === operation);
  expect(op, `${operation} under ${name}; children: ${childrenOf(server).map((s) => s.name).join(', ')}`).toBeDefined();
  return { server, op: op as ReadableSpan };
}

describe('tracing: the adapter loader of `serve`', () => {
  it('says in one line what to install when @opentelemetry/api is missing', async () => {
    const missing = Object.assign(new Error("Cannot find package '@opentelemetry/api' imported from /x/dist/adapters/otel/tracing.js"), {
      code: 'ERR_MODULE_NOT_FOUND',
    });
    const err = await loadTracing(() => Promise.reject(missing)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TracingUnavailableError);
    expect((err as Error).message).toMatch(/^OTEL_TRACING=true needs the package @opentelemetry\/api/);
    expect((err as Error).message).not.toContain('\n');
  });

  it('loads the adapter over the global provider when it is installed', async () => {
    expect((await loadTracing()).enabled).toBe(true);
  });
});

describe('tracing: embedded', () => {
  let sessions: Sessions;
  let app: FastifyInstance;
  let base: string;

  beforeAll(async () => {
    sessions = await createSessions({
      env: { DATA_DIR: ':memory:', ADMIN_API_KEY: ADMIN, RUN_SWEEP_INTERVAL_MS: '0', SWEEP_INTERVAL_MS: '0' },
      tracing: openTelemetryTracing({ tracerProvider: provider }),
    });
    ({ app, base } = await listen(sessions));
  });
  afterAll(async () => {
    await app?.close();
    await sessions?.close();
  });
  beforeEach(resetSpans);

  it('an HTTP request: server span → session operation → SQL statements (PGlite)', async () => {
    const created = await post(base, '/v1/sessions', { metadata: { note: SECRET_METADATA }, system_prompt: SECRET_PROMPT }, { traceparent });
    const { server, op } = request('POST /v1/sessions', 'session.create');
    expect(server.spanContext().traceId).toBe(CALLER_TRACE);
    expect(parentOf(server)).toBe(CALLER_SPAN);
    expect(server.attributes).toMatchObject({
      'http.request.method': 'POST',
      'http.route': '/v1/sessions',
      'url.path': '/v1/sessions',
      'http.response.status_code': 201,
    });
    expect(op.attributes['agent_sessions.session.id']).toBe(created.id);
    const sql = childrenOf(op).find((s) => s.name === 'session-create');
    expect(sql?.kind).toBe(SpanKind.CLIENT);
    expect(sql?.attributes).toEqual({ 'db.system.name': 'postgresql', 'db.operation.name': 'session-create' });
  });

  it('a failed operation marks its span with the error code, not its message; a 404 is no server error', async () => {
    const res = await fetch(`${base}/v1/sessions/0190a9b0-0000-7000-8000-000000000000`, { headers });
    expect(res.status).toBe(404);
    const { server, op } = request('GET /v1/sessions/:id', 'session.get');
    expect(server.status.code).toBe(SpanStatusCode.UNSET);
    expect(op.status).toEqual({ code: SpanStatusCode.ERROR, message: 'session_not_found' });
    expect(op.attributes['error.type']).toBe('session_not_found');
  });
});

const ready = requireServices(['postgres', 'redis', 'nats'], 'tracing/postgres+redis+nats');

describe.skipIf(!ready)('tracing: PostgreSQL + Redis + NATS', () => {
  let db: FreshDatabase;
  let sessions: Sessions;
  let app: FastifyInstance;
  let base: string;
  const nats = uniqueNatsNames();

  beforeAll(async () => {
    db = await freshDatabase('as_tracing');
    sessions = await createSessions({
      env: {
        DATABASE_URL: db.url,
        REDIS_URL: serviceUrl('redis'),
        KEY_PREFIX: uniqueKeyPrefix(),
        NATS_URL: serviceUrl('nats'),
        NATS_STREAM: nats.stream,
        NATS_SUBJECT_PREFIX: nats.subjectPrefix,
        ADMIN_API_KEY: ADMIN,
        // Reads go to Redis: no near cache in front.
        CACHE_MAX_ENTRIES: '0',
        SWEEP_INTERVAL_MS: '0',
        RUN_SWEEP_INTERVAL_MS: '0',
        OUTBOX_POLL_MS: '200',
      },
      agent: demoRunner({ wordDelayMs: 5 }),
      tracing: openTelemetryTracing({ tracerProvider: provider }),
    });
    ({ app, base } = await listen(sessions));
  });
  afterAll(async () => {
    await app?.close();
    await sessions?.close();
    await deleteStream(serviceUrl('nats'), nats.stream);
    await db?.drop();
  });
  beforeEach(resetSpans);

  it('create: server span (parent: the caller) → session.create → SQL statement and the snapshot’s Redis SET', async () => {
    const created = await post(base, '/v1/sessions', { metadata: { note: SECRET_METADATA }, system_prompt: SECRET_PROMPT }, { traceparent });
    const { server, op } = request('POST /v1/sessions', 'session.create');
    expect(parentOf(server)).toBe(CALLER_SPAN);
    expect(op.spanContext().traceId).toBe(CALLER_TRACE);
    expect(op.attributes['agent_sessions.session.id']).toBe(created.id);
    const children = childrenOf(op);
    const sql = children.find((s) => s.name === 'session-create');
    const dbName = new URL(db.url).pathname.slice(1);
    expect(sql?.attributes).toMatchObject({
      'db.system.name': 'postgresql',
      'db.operation.name': 'session-create',
      'db.namespace': dbName,
      'server.address': new URL(db.url).hostname,
    });
    // The snapshot's store is not waited for by the create (docs/distributed.md, rule 6): its
    // span, a child of the create's, ends shortly after the answer. A new id's key holds
    // nothing, so the store is a plain SET NX rather than the version-comparing script.
    const isRedis = (s: ReadableSpan) => s.attributes['db.system.name'] === 'redis';
    await waitFor(() => childrenOf(op).some(isRedis), 'the Redis span under session.create', 10_000);
    const redis = childrenOf(op).find(isRedis);
    expect(redis?.name).toBe('SET');
    expect(redis?.kind).toBe(SpanKind.CLIENT);
    expect(redis?.attributes).toMatchObject({ 'db.operation.name': 'SET', 'server.port': Number(new URL(serviceUrl('redis')).port || 6379) });
  });

  it('get: a Redis read (GET) under session.get; items: the append statement under session.items.append', async () => {
    const created = await post(base, '/v1/sessions', {});
    resetSpans();
    expect((await fetch(`${base}/v1/sessions/${String(created.id)}`, { headers })).status).toBe(200);
    const { op } = request('GET /v1/sessions/:id', 'session.get');
    expect(childrenOf(op).map((s) => s.name)).toContain('GET');

    resetSpans();
    // A body of many chunks: it arrives after the request's hooks ran, on the socket's events.
    const item = { role: 'user', content: { text: SECRET_CONTENT, padding: 'x'.repeat(200_000) } };
    await post(base, `/v1/sessions/${String(created.id)}/items`, { items: [item, item, item, item] });
    const append = request('POST /v1/sessions/:id/items', 'session.items.append').op;
    expect(childrenOf(append).map((s) => s.name)).toContain('session-append-items');
  });

  it('a run: run.start under the request; its execution a trace of its own, linked to the start', async () => {
    const created = await post(base, '/v1/sessions', {});
    resetSpans();
    const run = await post(base, `/v1/sessions/${String(created.id)}/runs`, { input: { text: SECRET_INPUT } }, { traceparent });
    await sessions.runs.wait(String(created.id), String(run.id));
    const start = request('POST /v1/sessions/:id/runs', 'run.start').op;
    expect(start.attributes).toMatchObject({ 'agent_sessions.session.id': created.id, 'agent_sessions.run.id': run.id });
    await waitFor(() => spans().some((s) => s.name === 'run.execute'), 'the run.execute span', 10_000);
    const execute = one('run.execute');
    expect(execute.parentSpanContext).toBeUndefined();
    expect(execute.spanContext().traceId).not.toBe(CALLER_TRACE);
    expect(execute.links.map((l) => l.context.spanId)).toEqual([start.spanContext().spanId]);
    expect(spans().filter((s) => parentOf(s) === execute.spanContext().spanId).length).toBeGreaterThan(0);
  });

  it('the relay: a NATS publish span (producer) under outbox.publish, its context in the message', async () => {
    const created = await post(base, '/v1/sessions', {});
    const subject = `${nats.subjectPrefix}.default.session.created`;
    const isOurs = (s: ReadableSpan) => s.kind === SpanKind.PRODUCER && s.attributes['messaging.message.id'] !== undefined;
    await waitFor(() => spans().some((s) => isOurs(s) && s.attributes['messaging.destination.name'] === subject), 'the NATS publish span', 10_000);
    const publish = spans().filter((s) => isOurs(s) && s.attributes['messaging.destination.name'] === subject).at(-1) as ReadableSpan;
    expect(publish.name).toBe(`publish ${nats.subjectPrefix}.{tenant}.session.created`);
    expect(publish.attributes).toMatchObject({
      'messaging.system': 'nats',
      'messaging.operation.type': 'send',
      'messaging.operation.name': 'publish',
      'messaging.destination.template': `${nats.subjectPrefix}.{tenant}.session.created`,
    });
    const batch = spans().find((s) => s.spanContext().spanId === parentOf(publish));
    expect(batch?.name).toBe('outbox.publish');

    // The message carries the publish span's context: a consumer's trace continues it.
    const nc = await connect({ servers: serviceUrl('nats') });
    try {
      const stored = await (await jetstreamManager(nc)).streams.getMessage(nats.stream, {
        seq: 0,
        last_by_subj: subject,
      });
      const sent = (stored?.json() as { session_id: string }).session_id;
      expect(sent).toBe(created.id);
      const id = publish.spanContext();
      expect(stored?.header?.get('traceparent')).toBe(`00-${id.traceId}-${id.spanId}-01`);
    } finally {
      await nc.close();
    }
  });
});

describe('tracing: off (the default)', () => {
  it('creates no span and leaves the services untraced', async () => {
    resetSpans();
    const sessions = await createSessions({
      env: { DATA_DIR: ':memory:', ADMIN_API_KEY: ADMIN, RUN_SWEEP_INTERVAL_MS: '0', SWEEP_INTERVAL_MS: '0' },
    });
    const { app, base } = await listen(sessions);
    try {
      const parts = internals(sessions);
      expect(parts.tracing).toBe(NO_TRACING);
      // No wrapper: the instances keep their prototypes' methods.
      expect(Object.hasOwn(parts.service, 'get')).toBe(false);
      expect(Object.hasOwn(parts.runs.api, 'start')).toBe(false);
      const created = await post(base, '/v1/sessions', { metadata: { note: SECRET_METADATA } }, { traceparent });
      expect((await fetch(`${base}/v1/sessions/${String(created.id)}`, { headers })).status).toBe(200);
      await sessions.get(String(created.id));
      expect(exporter.getFinishedSpans()).toEqual([]);
    } finally {
      await app.close();
      await sessions.close();
    }
  });
});

describe('tracing: what spans hold', () => {
  it('no attribute, name, status or link of any span in this file holds a key, metadata, content, input or prompt', () => {
    spans();
    expect(seen.length).toBeGreaterThan(10);
    const texts = seen.flatMap((s) => [
      s.name,
      s.status.message ?? '',
      ...Object.entries(s.attributes).flatMap(([k, v]) => [k, String(v)]),
      ...s.events.flatMap((e) => [e.name, ...Object.values(e.attributes ?? {}).map(String)]),
      ...s.links.flatMap((l) => Object.values(l.attributes ?? {}).map(String)),
    ]);
    for (const secret of SECRETS) expect(texts.filter((t) => t.includes(secret)), secret).toEqual([]);
    // Nor a header: the authorization scheme would show one.
    expect(texts.filter((t) => /bearer/i.test(t))).toEqual([]);
  });
});
