import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Sessions } from '../../app/sessions.js';
import {
  AppendItemsBody,
  AppendItemsResponse,
  ClearResponse,
  IdempotentIfMatchHeaders,
  IfMatchHeaders,
  ItemPage,
  itemJson,
  ListItemsQuery,
  newItemFromJson,
  PopResponse,
  problems,
  SessionIdParams,
} from '../../api/index.js';
import { answer } from '../idempotency.js';
import { callOptions, writeOptions } from './sessions.js';

const errors = problems(400, 401, 404, 409, 413);
const tags = ['items'];

export function itemRoutes(app: FastifyInstance, sessions: Sessions): void {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();

  r.get('/v1/sessions/:id/items', {
    config: { scope: 'read' },
    schema: {
      tags,
      summary: 'Conversation history: a page by cursor (oldest or newest first), or the last N turns',
      params: SessionIdParams,
      querystring: ListItemsQuery,
      response: { 200: ItemPage, ...errors },
    },
  }, async (request) => {
    const q = request.query;
    const page = await sessions.items.list(
      request.params.id,
      { cursor: q.cursor, limit: q.limit, lastTurns: q.last_turns, order: q.order },
      callOptions(request),
    );
    return { items: page.items.map(itemJson), next_cursor: page.nextCursor };
  });

  r.post('/v1/sessions/:id/items', {
    config: { scope: 'write' },
    schema: {
      tags,
      summary: 'Append items; an item with a stored client_id is answered (same body) or replaced in place',
      params: SessionIdParams,
      headers: IdempotentIfMatchHeaders,
      body: AppendItemsBody,
      response: { 201: AppendItemsResponse, ...problems(400, 401, 404, 409, 413, 422) },
    },
  }, async (request, reply) =>
    answer(request, reply, sessions, async () => {
      const result = await sessions.items.append(request.params.id, request.body.items.map(newItemFromJson), writeOptions(request));
      return { status: 201, headers: {}, body: { items: result.items.map(itemJson), session_version: result.session.version } };
    }));

  r.delete('/v1/sessions/:id/items', {
    config: { scope: 'write' },
    schema: { tags, summary: 'Clear the history', params: SessionIdParams, headers: IfMatchHeaders, response: { 200: ClearResponse, ...errors } },
  }, async (request) => {
    const result = await sessions.items.clear(request.params.id, writeOptions(request));
    return { removed: result.removed, session_version: result.session.version };
  });

  r.delete('/v1/sessions/:id/items/last', {
    config: { scope: 'write' },
    schema: { tags, summary: 'Pop the last item', params: SessionIdParams, headers: IfMatchHeaders, response: { 200: PopResponse, ...errors } },
  }, async (request) => {
    const result = await sessions.items.pop(request.params.id, writeOptions(request));
    return { item: result.item ? itemJson(result.item) : null, session_version: result.session.version };
  });
}
