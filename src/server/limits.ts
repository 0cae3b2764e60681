/**
 * Per-key limits at the HTTP edge, shared by every route: a rate-limit hook for every
 * authenticated route, and a connection slot that SSE routes hold while they stream.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { CapacityError } from '../core/errors.js';
import type { ConnectionLimiter, RateLimiter } from '../core/rate-limit.js';
import { problem, sendProblem } from './errors.js';

/**
 * Counts each authenticated request against its key's window (`RateLimit-*` headers on every
 * answer; 429 rate_limited with Retry-After past the limit). Register after auth: public
 * routes (health, docs) have no principal and are not counted.
 */
export function registerRateLimit(app: FastifyInstance, limiter: RateLimiter | null): void {
  if (!limiter) return;
  app.addHook('onRequest', async (request, reply) => {
    if (!request.principal) return;
    const d = await limiter.consume(request.principal.keyId, { signal: request.abortSignal });
    const resetSeconds = Math.max(1, Math.ceil(d.resetMs / 1000));
    void reply.header('ratelimit-limit', String(d.limit));
    void reply.header('ratelimit-remaining', String(d.remaining));
    void reply.header('ratelimit-reset', String(resetSeconds));
    void reply.header('ratelimit-policy', `${d.limit};w=${Math.round(limiter.windowMs / 1000)}`);
    if (!d.allowed) {
      void reply.header('retry-after', String(resetSeconds));
      return sendProblem(
        reply,
        problem('rate_limited', `this key may make ${d.limit} requests per ${Math.round(limiter.windowMs / 1000)} s`, {
          retry_after: resetSeconds,
        }),
      );
    }
  });
}

/**
 * Takes one of the key's SSE connection slots for as long as the response is open, and
 * gives it back when the connection closes (client gone, stream ended, server closing).
 * Call it before writing the first byte of an SSE response:
 *
 *   await holdConnectionSlot(request, reply, internals(sessions).connectionLimiter);
 *
 * Throws 429 too_many_connections when the key holds all of its slots.
 */
export async function holdConnectionSlot(
  request: FastifyRequest,
  reply: FastifyReply,
  limiter: ConnectionLimiter,
): Promise<void> {
  const slot = await limiter.acquire(request.principal.keyId, { signal: request.abortSignal });
  if (!slot) {
    throw new CapacityError('too_many_connections', `this key may hold ${limiter.limit} streams open at once`, {
      retryAfterSeconds: 5,
      details: { limit: limiter.limit },
    });
  }
  if (reply.raw.destroyed || request.raw.destroyed) {
    slot.release();
    return;
  }
  reply.raw.once('close', () => slot.release());
}
