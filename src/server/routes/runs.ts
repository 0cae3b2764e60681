/**
 * Runs over HTTP: start, list, get, interrupt, input, and the session's output as a
 * resumable Server-Sent Events stream (`id:` = seq; `Last-Event-ID` or `?after=` resumes
 * with no gap and no duplicate; closes after the terminal event, or with a `retry:` hint when
 * the server closes).
 */
import { once } from 'node:events';
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { isAgentSessionsError, ValidationError } from '../../core/errors.js';
import { isRunEnded } from '../../core/runs.js';
import type { Sessions } from '../../app/sessions.js';
import { internals } from '../../app/internal.js';
import {
  IdempotencyHeaders,
  InputBody,
  InputResponse,
  InterruptBody,
  InterruptQuery,
  LAST_EVENT_ID,
  ListRunsQuery,
  outputEventFrame,
  problems,
  RunJson,
  runJson,
  RunPage,
  RunParams,
  SessionIdParams,
  StartRunBody,
  StartedRunJson,
  startedRunJson,
  StreamHeaders,
  StreamQuery,
} from '../../api/index.js';
import { answer } from '../idempotency.js';
import { holdConnectionSlot } from '../limits.js';
import { SHUTDOWN_FRAME, type SseStreams } from '../sse-streams.js';
import { callOptions } from './sessions.js';

function lastEventId(header: string | undefined): number | undefined {
  if (header === undefined || header.trim() === '') return undefined;
  if (!LAST_EVENT_ID.test(header)) throw new ValidationError('Last-Event-ID must be an event seq', { field: 'last-event-id' });
  return Number(header);
}

const errors = problems(400, 401, 403, 404, 409, 413, 429);
/** A POST's answers also include 422: its Idempotency-Key was used with another request. */
const postErrors = problems(400, 401, 403, 404, 409, 413, 422, 429);
const tags = ['runs'];

export function runRoutes(app: FastifyInstance, sessions: Sessions, streams: SseStreams): void {
  const parts = internals(sessions);
  const r = app.withTypeProvider<TypeBoxTypeProvider>();

  r.post('/v1/sessions/:id/runs', {
    config: { scope: 'runs' },
    schema: {
      tags,
      summary:
        'Start a run of the configured agent, or follow if_busy when the session has one: 201 with a new run (started, ' +
        'queued, replaced, interrupted, debounced), 200 when the input went into an existing run (steered, merged, debounced)',
      params: SessionIdParams,
      headers: IdempotencyHeaders,
      body: StartRunBody,
      response: { 200: StartedRunJson, 201: StartedRunJson, ...postErrors },
    },
  }, async (request, reply) =>
    answer(request, reply, sessions, async () => {
      const {
        input,
        if_busy: ifBusy,
        debounce_ms: debounceMs,
        persist_output: persistOutput,
        agent,
        on_owner_lost: onOwnerLost,
        max_retries: maxRetries,
      } = request.body;
      // Not bound to the request's signal: a client that leaves after asking still gets its run.
      // Always an agent run: whichever instance serves the agent executes it.
      const run = await sessions.runs.start(request.params.id, {
        tenant: request.principal.tenant,
        input: input ?? null,
        ifBusy,
        debounceMs,
        persistOutput,
        agent,
        onOwnerLost,
        maxRetries,
      });
      // A new row answers 201; input that joined a run (steered into it, merged or debounced into it) 200.
      const joined = run.decision === 'steered' || run.decision === 'merged' || (run.decision === 'debounced' && run.inputs.length > 1);
      return {
        status: joined ? 200 : 201,
        headers: { location: `/v1/sessions/${run.sessionId}/runs/${run.id}` },
        body: startedRunJson(run),
      };
    }));

  r.get('/v1/sessions/:id/runs', {
    config: { scope: 'read' },
    schema: {
      tags,
      summary: 'List runs, newest first',
      params: SessionIdParams,
      querystring: ListRunsQuery,
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
      description:
        'Without `wait_ms`: 202 with the run as flagged. With `wait_ms`: 200 with the run once it ended (wherever it ' +
        'runs), or 202 with the run as it is when `wait_ms` passed.',
      params: SessionIdParams,
      querystring: InterruptQuery,
      headers: IdempotencyHeaders,
      body: Type.Optional(InterruptBody),
      response: { 200: RunJson, 202: RunJson, ...postErrors },
    },
  }, async (request, reply) => {
    const runId = request.body?.run_id;
    const waitMs = request.query.wait_ms;
    return answer(
      request,
      reply,
      sessions,
      async () => {
        const run = await sessions.runs.interrupt(request.params.id, { ...callOptions(request), runId });
        return { status: 202, headers: {}, body: runJson(run) };
      },
      // The flag is committed (and stored, with a key) before the wait: a replay waits again.
      async (flagged) => {
        if (waitMs === undefined) return flagged;
        const run = await sessions.runs.get(request.params.id, (flagged.body as { id: string }).id, callOptions(request));
        const ended = await parts.runs.api.waitForEnd(run, waitMs, callOptions(request).signal);
        return { status: isRunEnded(ended) ? 200 : 202, headers: {}, body: runJson(ended) };
      },
    );
  });

  r.post('/v1/sessions/:id/input', {
    config: { scope: 'runs' },
    schema: {
      tags,
      summary: 'Send input to the running run, wherever it runs',
      params: SessionIdParams,
      headers: IdempotencyHeaders,
      body: InputBody,
      response: { 202: InputResponse, ...postErrors },
    },
  }, async (request, reply) =>
    answer(request, reply, sessions, async () => {
      const { input, run_id: runId } = request.body;
      const sent = await sessions.runs.sendInput(request.params.id, input, { ...callOptions(request), runId });
      return { status: 202, headers: {}, body: { run_id: sent.runId, seq: sent.seq } };
    }));

  r.get('/v1/sessions/:id/stream', {
    // A HEAD would open a stream that never sends a body.
    exposeHeadRoute: false,
    config: { scope: 'read', stream: 'run' },
    schema: {
      tags,
      summary: 'Output as Server-Sent Events (id = seq); resumes after Last-Event-ID or ?after=; ends after the terminal event',
      params: SessionIdParams,
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
    await holdConnectionSlot(request, reply, parts.connectionLimiter);
    const res = reply.raw;
    const closing = streams.track(res);
    const signal = AbortSignal.any([request.abortSignal, closing]);
    const events = sessions.runs.stream(request.params.id, { ...opts, after, signal });
    reply.hijack();
    const closed = parts.metrics.sseOpened('run');
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
        if (!res.write(outputEventFrame(e))) await once(res, 'drain', { signal });
      }
    } catch (err) {
      if (closing.aborted && !request.abortSignal.aborted) {
        // The server is closing: reconnect soon (elsewhere) and lose nothing.
        res.write(SHUTDOWN_FRAME);
      } else if (!request.abortSignal.aborted) {
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
