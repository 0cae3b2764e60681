/**
 * GET /v1/events: the tenant's events as Server-Sent Events, served from the outbox (no broker
 * needed). `id:` is the event id; a client that reconnects with `Last-Event-ID` (or `?after=`)
 * continues with no gap and no duplicate. Comment lines keep idle connections alive. When the
 * server closes, the stream ends with a `retry:` hint.
 */
import { once } from 'node:events';
import type { ServerResponse } from 'node:http';
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { ValidationError } from '../../core/errors.js';
import type { Sessions } from '../../app/sessions.js';
import { internals } from '../../app/internal.js';
import { EVENT_ID, eventFrame, EventsHeaders, EventsQuery, problems } from '../../api/index.js';
import { holdConnectionSlot } from '../limits.js';
import { SHUTDOWN_FRAME, type SseStreams } from '../sse-streams.js';

/** Writes, waiting for the socket to drain when its buffer is full (a slow reader slows the feed, not the server). */
async function write(res: ServerResponse, chunk: string, signal: AbortSignal): Promise<void> {
  if (res.write(chunk)) return;
  await once(res, 'drain', { signal });
}

export function eventRoutes(app: FastifyInstance, sessions: Sessions, streams: SseStreams): void {
  const parts = internals(sessions);
  const r = app.withTypeProvider<TypeBoxTypeProvider>();

  r.get('/v1/events', {
    config: { scope: 'read', stream: 'events' },
    schema: {
      tags: ['events'],
      summary: 'Event feed (SSE), resumable with Last-Event-ID',
      description:
        'text/event-stream of the tenant’s events: `id: <event id>`, `event: <type>`, `data: <envelope JSON>` ' +
        '(id, type, tenant_id, session_id, occurred_at, data). Without `after` or `Last-Event-ID` it starts with ' +
        'events committed from now on.',
      produces: ['text/event-stream'],
      querystring: EventsQuery,
      headers: EventsHeaders,
      response: problems(400, 401, 403, 429),
    },
  }, async (request, reply) => {
    const lastEventId = request.headers['last-event-id'];
    let after: number | undefined;
    if (typeof lastEventId === 'string' && lastEventId !== '') {
      if (!EVENT_ID.test(lastEventId)) throw new ValidationError('Last-Event-ID must be an event id', { field: 'last-event-id' });
      after = Number(lastEventId);
    } else if (request.query.after !== undefined) {
      after = Number(request.query.after);
    }
    const types = request.query.type?.flatMap((t) => t.split(',')).map((t) => t.trim()).filter(Boolean);
    const signal = request.abortSignal;
    const closing = streams.track(reply.raw);
    // Validates before anything is sent, so bad input is a plain 400.
    const feed = sessions.events.subscribe({
      tenant: request.principal.tenant,
      after,
      types,
      sessionId: request.query.session_id,
      signal: AbortSignal.any([signal, closing]),
    });
    const headers = {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    };
    // HEAD (which Fastify answers with this handler) gets the headers of the stream, not the stream.
    if (request.method === 'HEAD') return reply.headers(headers).send(undefined as never);
    await holdConnectionSlot(request, reply, parts.connectionLimiter);

    reply.hijack();
    const res = reply.raw;
    const closed = parts.metrics.sseOpened('events');
    res.once('close', closed);
    res.writeHead(200, headers);
    res.write('retry: 2000\n: connected\n\n');
    const heartbeat = setInterval(() => {
      if (!res.writableEnded) res.write(': heartbeat\n\n');
    }, sessions.config.sseHeartbeatMs);
    try {
      for await (const event of feed) await write(res, eventFrame(event), signal);
      // The feed ends only when this instance closes it: reconnect elsewhere.
      if (!res.writableEnded) res.write(SHUTDOWN_FRAME);
    } catch (err) {
      if (closing.aborted && !signal.aborted && !res.writableEnded) {
        // The server is closing: reconnect soon (elsewhere) and lose nothing.
        res.write(SHUTDOWN_FRAME);
      } else if (!signal.aborted && !res.writableEnded) {
        // The client reconnects with Last-Event-ID and loses nothing.
        const code = (err as { code?: unknown }).code === 'unavailable' ? 'unavailable' : 'internal';
        request.log.warn({ err }, 'event feed ended');
        res.write(`event: error\ndata: ${JSON.stringify({ code })}\n\n`);
      }
    } finally {
      clearInterval(heartbeat);
      if (!res.writableEnded) res.end();
      closed();
    }
  });
}
