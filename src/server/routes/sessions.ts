import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { NotFoundError, ValidationError } from '../../core/errors.js';
import type { CallOptions, Session as SessionModel, WriteOptions } from '../../core/types.js';
import type { Sessions } from '../../app/sessions.js';
import { answer, type Answer } from '../idempotency.js';
import {
  BatchDeleteBody,
  BatchDeleteResponse,
  BatchGetBody,
  BatchGetResponse,
  counterDeltas,
  CountersBody,
  CreateSessionBody,
  createSessionInput,
  DeleteQuery,
  etag,
  ForkBody,
  IdempotencyHeaders,
  IdempotentIfMatchHeaders,
  IfMatchHeaders,
  ListSessionsQuery,
  parseIfMatch,
  PutSessionBody,
  problems,
  Session,
  SessionIdParams,
  sessionJson,
  SessionPage,
  UpdateSessionBody,
  updateSessionInput,
} from '../../api/index.js';

export function callOptions(request: FastifyRequest): CallOptions {
  return { tenant: request.principal.tenant, signal: request.abortSignal };
}

/** Call options plus the `If-Match` precondition, if any. */
export function writeOptions(request: FastifyRequest): WriteOptions {
  const expected = parseIfMatch(request.headers['if-match']);
  if (expected === 'invalid') throw new ValidationError('If-Match must be a quoted revision, e.g. "3"');
  return expected === undefined ? callOptions(request) : { ...callOptions(request), expectedRevision: expected };
}

/** The session with its revision as the ETag. */
function sendSession(reply: FastifyReply, session: SessionModel): FastifyReply {
  return reply.header('etag', etag(session.revision)).send(sessionJson(session));
}

/** 201 with the new session and where it lives (create, fork). */
function sendCreated(reply: FastifyReply, session: SessionModel): FastifyReply {
  return sendSession(reply.status(201).header('location', `/v1/sessions/${session.id}`), session);
}

/** The answer of a POST that returns the session (200, or 201 with its location when created). */
function sessionAnswer(session: SessionModel, created = false): Answer {
  const headers: Record<string, string> = { etag: etag(session.revision) };
  if (created) headers.location = `/v1/sessions/${session.id}`;
  return { status: created ? 201 : 200, headers, body: sessionJson(session) };
}

const errors = problems(400, 401, 404, 409, 413);
/** A POST's answers also include 422: its Idempotency-Key was used with another request. */
const postErrors = problems(400, 401, 404, 409, 413, 422);
const tags = ['sessions'];

export function sessionRoutes(app: FastifyInstance, sessions: Sessions): void {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();

  r.post('/v1/sessions', {
    config: { scope: 'write' },
    schema: { tags, summary: 'Create a session', headers: IdempotencyHeaders, body: CreateSessionBody, response: { 201: Session, ...postErrors } },
  }, async (request, reply) =>
    answer(request, reply, sessions, async () =>
      sessionAnswer(await sessions.create(createSessionInput(request.body), callOptions(request)), true),
    ));

  r.put('/v1/sessions/:id', {
    config: { scope: 'write' },
    schema: {
      tags,
      summary: 'Get or create a session: 200 with the existing one (the body is not applied), 201 with a new one made from the body',
      params: SessionIdParams,
      // No body (null when there is none) is an empty one.
      body: Type.Optional(Type.Union([PutSessionBody, Type.Null()])),
      response: { 200: Session, 201: Session, ...errors },
    },
  }, async (request, reply) => {
    const input = createSessionInput(request.body ?? {});
    const { session, created } = await sessions.ensure(request.params.id, input, callOptions(request));
    return created ? sendCreated(reply, session) : sendSession(reply, session);
  });

  r.get('/v1/sessions', {
    config: { scope: 'read' },
    schema: { tags, summary: 'List sessions (newest first)', querystring: ListSessionsQuery, response: { 200: SessionPage, ...errors } },
  }, async (request) => {
    const q = request.query;
    const page = await sessions.list(
      { userId: q.user_id, status: q.status, updatedAfter: q.updated_after, search: q.q, cursor: q.cursor, limit: q.limit },
      callOptions(request),
    );
    return { sessions: page.items.map(sessionJson), next_cursor: page.nextCursor };
  });

  r.get('/v1/sessions/:id', {
    config: { scope: 'read' },
    schema: {
      tags,
      summary: 'Get a session (ETag = revision)',
      params: SessionIdParams,
      response: { 200: Session, 304: Type.Unsafe<never>({ description: 'Not modified (If-None-Match, and nothing written since): no body' }), ...errors },
    },
  }, async (request, reply) => {
    const session = await sessions.get(request.params.id, callOptions(request));
    void reply.header('etag', etag(session.revision));
    // The ETag names the revision, which appends, counters and runs leave alone. A 304 is
    // sound only when nothing at all was written since: then the version still equals the
    // revision the client holds (revision <= version on every row, and both rise together).
    if (request.headers['if-none-match'] === etag(session.revision) && session.version === session.revision) {
      return reply.status(304).send(undefined as never);
    }
    return sessionJson(session);
  });

  r.patch('/v1/sessions/:id', {
    config: { scope: 'write' },
    schema: {
      tags,
      summary: 'Update a session (metadata merge, status change; If-Match supported)',
      params: SessionIdParams,
      headers: IfMatchHeaders,
      body: UpdateSessionBody,
      response: { 200: Session, ...errors },
    },
  }, async (request, reply) => {
    const session = await sessions.update(request.params.id, updateSessionInput(request.body), writeOptions(request));
    return sendSession(reply, session);
  });

  r.post('/v1/sessions/:id/touch', {
    config: { scope: 'write' },
    schema: { tags, summary: 'Extend expiry', params: SessionIdParams, headers: IdempotentIfMatchHeaders, response: { 200: Session, ...postErrors } },
  }, async (request, reply) =>
    answer(request, reply, sessions, async () => sessionAnswer(await sessions.touch(request.params.id, writeOptions(request)))));

  r.post('/v1/sessions/:id/counters', {
    config: { scope: 'write' },
    schema: {
      tags,
      summary: 'Atomically increment counters (send an Idempotency-Key so a retry never counts twice)',
      params: SessionIdParams,
      headers: IdempotentIfMatchHeaders,
      body: CountersBody,
      response: { 200: Session, ...postErrors },
    },
  }, async (request, reply) =>
    answer(request, reply, sessions, async () =>
      sessionAnswer(await sessions.incrementCounters(request.params.id, counterDeltas(request.body), writeOptions(request))),
    ));

  r.delete('/v1/sessions/:id', {
    config: { scope: 'write' },
    schema: {
      tags,
      summary: 'Terminate a session (reason); ?purge=true deletes it with everything it holds',
      params: SessionIdParams,
      querystring: DeleteQuery,
      headers: IfMatchHeaders,
      response: { 200: Session, 204: { type: 'null', description: 'purged' }, ...errors },
    },
  }, async (request, reply) => {
    const { id } = request.params;
    if (request.query.purge) {
      // A purge removes every revision at once; a precondition on one would be misleading.
      if (request.headers['if-match'] !== undefined) throw new ValidationError('If-Match cannot be combined with purge=true');
      const opts = callOptions(request);
      if (!(await sessions.purge(id, opts))) throw new NotFoundError('session', id);
      return reply.status(204).send(null);
    }
    const session = await sessions.terminate(id, request.query.reason ?? 'terminated', writeOptions(request));
    return sendSession(reply, session);
  });

  r.post('/v1/sessions/:id/fork', {
    config: { scope: 'write' },
    schema: {
      tags,
      summary: 'Fork: a new session with parent_session_id and a copy of the items',
      params: SessionIdParams,
      headers: IdempotencyHeaders,
      body: ForkBody,
      response: { 201: Session, ...postErrors },
    },
  }, async (request, reply) =>
    answer(request, reply, sessions, async () =>
      sessionAnswer(await sessions.fork(request.params.id, createSessionInput(request.body ?? {}), callOptions(request)), true),
    ));

  // `::` escapes the colon, so the path is literally /v1/sessions:batch-get.
  r.post('/v1/sessions::batch-get', {
    config: { scope: 'read' },
    schema: {
      tags,
      summary: 'Get several sessions in one call',
      headers: IdempotencyHeaders,
      body: BatchGetBody,
      response: { 200: BatchGetResponse, ...postErrors },
    },
  }, async (request, reply) =>
    answer(request, reply, sessions, async () => {
      const found = await sessions.getMany(request.body.ids, callOptions(request));
      const ids = new Set(found.map((s) => s.id));
      const body = { sessions: found.map(sessionJson), not_found: [...new Set(request.body.ids)].filter((i) => !ids.has(i)) };
      return { status: 200, headers: {}, body };
    }));

  r.post('/v1/sessions::batch-delete', {
    config: { scope: 'write' },
    schema: {
      tags,
      summary: 'Terminate (or purge) several sessions in one call',
      headers: IdempotencyHeaders,
      body: BatchDeleteBody,
      response: { 200: BatchDeleteResponse, ...postErrors },
    },
  }, async (request, reply) =>
    answer(request, reply, sessions, async () => {
      const { ids, purge, reason } = request.body;
      const result = await sessions.deleteMany(ids, { purge, reason }, callOptions(request));
      return { status: 200, headers: {}, body: { deleted: result.deleted, not_found: result.notFound } };
    }));
}
