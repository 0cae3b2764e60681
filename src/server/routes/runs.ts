/**
 * Runs over HTTP: start, list, get, interrupt, input, and the session's output as a
 * resumable Server-Sent Events stream (`id:` = seq; `Last-Event-ID` or `?after=` resumes
 * with no gap and no duplicate; closes after the terminal event).
 */
import { once } from 'node:events';
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type, type Static } from 'typebox';
import { isAgentSessionsError, ValidationError } from '../../core/errors.js';
import type { OutputEvent, Run } from '../../core/runs.js';
import type { Sessions } from '../../sessions.js';
import { holdConnectionSlot } from '../limits.js';
import { Problem, SessionId } from '../schemas.js';
import { callOptions } from './sessions.js';

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) => Type.Union([t, Type.Null()]);
const DateTime = Type.String({ format: 'date-time' });

const RunJson = Type.Object({
  id: Type.String(),
  session_id: Type.String(),
  status: Type.Union([
    Type.Literal('queued'),
    Type.Literal('running'),
    Type.Literal('completed'),
    Type.Literal('failed'),
    Type.Literal('interrupted'),
  ]),
  owner: Nullable(Type.String()),
  input: Type.Unknown(),
  error: Nullable(Type.String()),
  end_reason: Nullable(Type.String()),
  interrupt_requested_at: Nullable(DateTime),
  lease_expires_at: Nullable(DateTime),
  created_at: DateTime,
  started_at: Nullable(DateTime),
  ended_at: Nullable(DateTime),
  start_seq: Nullable(Type.Integer()),
  end_seq: Nullable(Type.Integer()),
});
export type RunJsonType = Static<typeof RunJson>;

const IfBusy = Type.Union([Type.Literal('reject'), Type.Literal('interrupt'), Type.Literal('enqueue')], {
  description: 'When a run is going: refuse (409 run_in_progress), interrupt it and run after it, or queue behind it',
});
const StartBody = Type.Object(
  { input: Type.Optional(Type.Unknown()), if_busy: Type.Optional(IfBusy) },
  { additionalProperties: false },
);
const RunPage = Type.Object({ runs: Type.Array(RunJson), next_cursor: Nullable(Type.String()) });
export type RunPageJson = Static<typeof RunPage>;
export type IfBusyJson = Static<typeof IfBusy>;
export type StartRunJson = Static<typeof StartBody>;
const RunParams = Type.Object({ id: SessionId, runId: Type.String({ format: 'uuid' }) }, { additionalProperties: false });
const SessionParams = Type.Object({ id: SessionId }, { additionalProperties: false });
const ListQuery = Type.Object(
  {
    cursor: Type.Optional(Type.String({ maxLength: 512 })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100 })),
  },
  { additionalProperties: false },
);
const InterruptBody = Type.Union([
  Type.Object({ run_id: Type.Optional(Type.String({ format: 'uuid' })) }, { additionalProperties: false }),
  Type.Null(),
]);
const InputBody = Type.Object(
  { input: Type.Unknown(), run_id: Type.Optional(Type.String({ format: 'uuid' })) },
  { additionalProperties: false, required: ['input'] },
);
const InputResponse = Type.Object({ run_id: Type.String(), seq: Type.Integer() });
export type InputSentJson = Static<typeof InputResponse>;
const StreamQuery = Type.Object(
  { after: Type.Optional(Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER })) },
  { additionalProperties: false },
);
const StreamHeaders = Type.Object({ 'last-event-id': Type.Optional(Type.String({ maxLength: 32 })) });

export function runJson(r: Run): RunJsonType {
  return {
    id: r.id,
    session_id: r.sessionId,
    status: r.status,
    owner: r.owner,
    input: r.input,
    error: r.error,
    end_reason: r.endReason,
    interrupt_requested_at: r.interruptRequestedAt,
    lease_expires_at: r.leaseExpiresAt,
    created_at: r.createdAt,
    started_at: r.startedAt,
    ended_at: r.endedAt,
    start_seq: r.startSeq,
    end_seq: r.endSeq,
  };
}

/** The `data:` of one output event on the stream. */
export interface OutputEventJson {
  seq: number;
  run_id: string;
  type: string;
  data: unknown;
  created_at: string;
}

/** One SSE frame. JSON never contains a raw newline, so `data:` is always one line. */
export function sseFrame(e: OutputEvent): string {
  const json: OutputEventJson = { seq: e.seq, run_id: e.runId, type: e.type, data: e.data, created_at: e.createdAt };
  const data = JSON.stringify(json);
  return `id: ${e.seq}\nevent: ${e.type}\ndata: ${data}\n\n`;
}

function lastEventId(header: string | undefined): number | undefined {
  if (header === undefined || header.trim() === '') return undefined;
  if (!/^\s*\d{1,15}\s*$/.test(header)) throw new ValidationError('Last-Event-ID must be an event seq', { field: 'last-event-id' });
  return Number(header);
}

const errors = { 400: Problem, 401: Problem, 403: Problem, 404: Problem, 409: Problem, 413: Problem, 429: Problem };
const tags = ['runs'];

export function runRoutes(app: FastifyInstance, sessions: Sessions): void {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();

  r.post('/v1/sessions/:id/runs', {
    config: { scope: 'runs' },
    schema: {
      tags,
      summary: 'Start a run of the configured agent (202: running, or queued with if_busy)',
      params: SessionParams,
      body: StartBody,
      response: { 202: RunJson, ...errors },
    },
  }, async (request, reply) => {
    const { input, if_busy: ifBusy } = request.body;
    // Not bound to the request's signal: a client that leaves after asking still gets its run.
    const run = await sessions.runs.start(request.params.id, undefined, {
      tenant: request.principal.tenant,
      input: input ?? null,
      ifBusy,
    });
    return reply.status(202).header('location', `/v1/sessions/${run.sessionId}/runs/${run.id}`).send(runJson(run));
  });

  r.get('/v1/sessions/:id/runs', {
    config: { scope: 'read' },
    schema: {
      tags,
      summary: 'List runs, newest first',
      params: SessionParams,
      querystring: ListQuery,
      response: { 200: RunPage, ...errors },
    },
  }, async (request) => {
    const page = await sessions.runs.list(request.params.id, request.query, callOptions(request));
    return { runs: page.items.map(runJson), next_cursor: page.nextCursor };
  });

  r.get('/v1/sessions/:id/runs/:runId', {
    config: { scope: 'read' },
    schema: { tags, summary: 'Get a run', params: RunParams, response: { 200: RunJson, ...errors } },
  }, async (request) => runJson(await sessions.runs.get(request.params.id, request.params.runId, callOptions(request))));

  r.post('/v1/sessions/:id/interrupt', {
    config: { scope: 'runs' },
    schema: {
      tags,
      summary: 'Interrupt the running run (or cancel the queued run named by run_id), from any instance',
      params: SessionParams,
      body: Type.Optional(InterruptBody),
      response: { 202: RunJson, ...errors },
    },
  }, async (request, reply) => {
    const runId = request.body?.run_id;
    const run = await sessions.runs.interrupt(request.params.id, { ...callOptions(request), runId });
    return reply.status(202).send(runJson(run));
  });

  r.post('/v1/sessions/:id/input', {
    config: { scope: 'runs' },
    schema: {
      tags,
      summary: 'Send input to the running run, wherever it runs',
      params: SessionParams,
      body: InputBody,
      response: { 202: InputResponse, ...errors },
    },
  }, async (request, reply) => {
    const { input, run_id: runId } = request.body;
    const sent = await sessions.runs.sendInput(request.params.id, input, { ...callOptions(request), runId });
    return reply.status(202).send({ run_id: sent.runId, seq: sent.seq });
  });

  r.get('/v1/sessions/:id/stream', {
    // A HEAD would open a stream that never sends a body.
    exposeHeadRoute: false,
    config: { scope: 'read', stream: 'run' },
    schema: {
      tags,
      summary: 'Output as Server-Sent Events (id = seq); resumes after Last-Event-ID or ?after=; ends after the terminal event',
      params: SessionParams,
      querystring: StreamQuery,
      headers: StreamHeaders,
      produces: ['text/event-stream'],
      response: { 200: { description: 'text/event-stream', type: 'string' }, ...errors },
    },
  }, async (request, reply) => {
    const opts = callOptions(request);
    const after = lastEventId(request.headers['last-event-id']) ?? request.query.after;
    // Checked before the stream opens, so an unknown session is a plain 404 problem.
    await sessions.get(request.params.id, opts);
    await holdConnectionSlot(request, reply, sessions.connectionLimiter);
    const events = sessions.runs.stream(request.params.id, { ...opts, after });
    reply.hijack();
    const res = reply.raw;
    const closed = sessions.metrics.sseOpened('run');
    res.once('close', closed);
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.write(': stream open\n\n');
    const heartbeat = setInterval(() => res.write(': heartbeat\n\n'), sessions.config.sseHeartbeatMs);
    try {
      for await (const e of events) {
        if (!res.write(sseFrame(e))) await once(res, 'drain', { signal: request.abortSignal });
      }
    } catch (err) {
      if (!request.abortSignal.aborted) {
        // The client reconnects with Last-Event-ID and loses nothing; say why in a comment.
        request.log.warn({ err, session_id: request.params.id }, 'output stream failed');
        const code = isAgentSessionsError(err) ? err.code : 'internal_error';
        res.write(`: stream interrupted (${code}); reconnect with Last-Event-ID\n\n`);
      }
    } finally {
      clearInterval(heartbeat);
      res.end();
      closed();
    }
  });
}
