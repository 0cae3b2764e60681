/**
 * `Idempotency-Key` on the POST routes (SPEC §7.1, core/idempotency.ts). A route builds its
 * whole answer (status, headers, body) in `answer`; with a key, that happens inside the
 * idempotent call's transaction and the answer is stored with the operation's writes, and a
 * retry gets the stored answer with `Idempotent-Replayed: true`, serialized by the same
 * response schema, so it is the first answer byte for byte.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { internals } from '../app/internal.js';
import type { Sessions } from '../app/sessions.js';
import { checkIdempotencyKey, requestFingerprint, type StoredAnswer } from '../core/idempotency.js';
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
  sessions: Sessions,
  build: () => Promise<Answer>,
  /**
   * What the answer becomes after the commit, on the first execution and on every replay
   * alike; not stored (an interrupt with `wait_ms` waits for the run it flagged here).
   */
  then: (a: Answer) => Promise<Answer> = async (a) => a,
): Promise<FastifyReply> {
  const header = request.headers[IDEMPOTENCY_KEY_HEADER];
  if (header === undefined) return send(reply, await then(await build()), false);
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
  const parts = internals(sessions);
  const tenant = request.principal.tenant;
  const outcome = await parts.idempotency.run(tenant, header, fingerprint, build);
  if (outcome.replayed) {
    // The first execution may have died between its commit and its cache updates: the caches
    // of the sessions the request names are brought up to their rows before the replay
    // acknowledges the write again.
    const ids = new Set<string>();
    const params = request.params as { id?: unknown } | undefined;
    if (typeof params?.id === 'string') ids.add(params.id);
    const body = request.body as { ids?: unknown } | undefined;
    if (Array.isArray(body?.ids)) for (const id of body.ids) if (typeof id === 'string') ids.add(id);
    await Promise.all([...ids].map((id) => parts.service.resync(id, { tenant })));
  }
  return send(reply, await then(outcome.answer), outcome.replayed);
}

function send(reply: FastifyReply, a: Answer, replayed: boolean): FastifyReply {
  void reply.status(a.status);
  for (const [name, value] of Object.entries(a.headers)) void reply.header(name, value);
  if (replayed) void reply.header(REPLAYED_HEADER, 'true');
  return reply.send(a.body);
}
