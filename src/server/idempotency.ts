/**
 * `Idempotency-Key` on the POST routes (SPEC §7.1, core/idempotency.ts). A route builds its
 * whole answer (status, headers, body) in `answer`; with a key, that happens inside the
 * idempotent call's transaction and the answer is stored with the operation's writes, and a
 * retry gets the stored answer with `Idempotent-Replayed: true`, serialized by the same
 * response schema, so it is the first answer byte for byte.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { checkIdempotencyKey, requestFingerprint, type IdempotentCalls, type StoredAnswer } from '../core/idempotency.js';
import { ValidationError } from '../core/errors.js';

export const IDEMPOTENCY_KEY_HEADER = 'idempotency-key';
export const REPLAYED_HEADER = 'idempotent-replayed';

/** What a route answers: a 2xx status, the headers that belong to the answer, the body. */
export type Answer = StoredAnswer;

/**
 * Sends what `build` answers, executing it at most once per tenant and `Idempotency-Key`
 * when the request carries one. The fingerprint covers the method, the route, its
 * parameters and query, the body and If-Match.
 */
export async function answer(
  request: FastifyRequest,
  reply: FastifyReply,
  calls: IdempotentCalls,
  build: () => Promise<Answer>,
): Promise<FastifyReply> {
  const header = request.headers[IDEMPOTENCY_KEY_HEADER];
  if (header === undefined) return send(reply, await build(), false);
  if (Array.isArray(header)) throw new ValidationError('send one Idempotency-Key', { field: IDEMPOTENCY_KEY_HEADER });
  checkIdempotencyKey(header);
  const fingerprint = requestFingerprint({
    method: request.method,
    route: request.routeOptions.url ?? request.url,
    params: request.params ?? null,
    query: request.query ?? null,
    body: request.body ?? null,
    ifMatch: request.headers['if-match'] ?? null,
  });
  const outcome = await calls.run(request.principal.tenant, header, fingerprint, build);
  return send(reply, outcome.answer, outcome.replayed);
}

function send(reply: FastifyReply, a: Answer, replayed: boolean): FastifyReply {
  void reply.status(a.status);
  for (const [name, value] of Object.entries(a.headers)) void reply.header(name, value);
  if (replayed) void reply.header(REPLAYED_HEADER, 'true');
  return reply.send(a.body);
}
