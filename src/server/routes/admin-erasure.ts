/**
 * Erasure under /v1/admin (admin scope; docs/operations.md, "Erasure"). A tenant admin
 * erases users of its own tenant; a root admin names any tenant, and alone erases a tenant.
 */
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { AgentSessionsError } from '../../core/errors.js';
import type { Sessions } from '../../app/sessions.js';
import { internals } from '../../app/internal.js';
import { Erased, erasedJson, EraseTenantParams, EraseUserParams, EraseUserQuery, problems } from '../../api/index.js';

const tags = ['admin'];

export function adminErasureRoutes(app: FastifyInstance, sessions: Sessions): void {
  const parts = internals(sessions);
  const r = app.withTypeProvider<TypeBoxTypeProvider>();

  r.delete('/v1/admin/users/:user_id', {
    config: { scope: 'admin' },
    schema: {
      tags,
      summary: "Erase a user: every session of theirs with its items, runs, output, events and cached copies",
      params: EraseUserParams,
      querystring: EraseUserQuery,
      response: { 200: Erased, ...problems(400, 401, 403, 409) },
    },
  }, async (request, reply) => {
    const principal = request.principal;
    const tenant = request.query.tenant ?? principal.tenant;
    if (!principal.root && tenant !== principal.tenant) {
      throw new AgentSessionsError('forbidden', `this key erases only tenant ${principal.tenant}'s users`);
    }
    const result = await parts.erasure.eraseUser(tenant, request.params.user_id, { signal: request.abortSignal });
    return reply.header('cache-control', 'no-store').send(erasedJson(result));
  });

  r.delete('/v1/admin/tenants/:tenant', {
    config: { scope: 'admin' },
    schema: {
      tags,
      summary: 'Erase a tenant: all its sessions, runs, output, events, API keys and cached copies (root admin only)',
      params: EraseTenantParams,
      response: { 200: Erased, ...problems(400, 401, 403, 404, 409) },
    },
  }, async (request, reply) => {
    if (!request.principal.root) throw new AgentSessionsError('forbidden', 'only a root admin key erases a tenant');
    const result = await parts.erasure.eraseTenant(request.params.tenant, { signal: request.abortSignal });
    return reply.header('cache-control', 'no-store').send(erasedJson(result));
  });
}
