/**
 * Key management under /v1/admin/keys (admin scope). A root admin key (ADMIN_API_KEY, the
 * embedded first-start key, or one made with `keys create --root`) manages every tenant's
 * keys; any other admin key manages only its own tenant's, and another tenant's key is
 * "not found" to it. Keys made here are never root.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { AgentSessionsError } from '../../core/errors.js';
import type { Principal } from '../../core/api-keys.js';
import type { Sessions } from '../../app/sessions.js';
import { internals } from '../../app/internal.js';
import { CreateKeyBody, CreatedKey, Key, KeyIdParams, keyJson, KeyList, ListKeysQuery, problems } from '../../api/index.js';

const errors = problems(400, 401, 403, 404);
const tags = ['admin'];

/** The tenant whose keys this principal may manage, or undefined for all of them. */
function managedTenant(principal: Principal): string | undefined {
  return principal.root ? undefined : principal.tenant;
}

function keyNotFound(id: string): AgentSessionsError {
  return new AgentSessionsError('key_not_found', `key ${id} not found`, { details: { id } });
}

export function adminKeyRoutes(app: FastifyInstance, sessions: Sessions): void {
  const parts = internals(sessions);
  const r = app.withTypeProvider<TypeBoxTypeProvider>();
  const principalOf = (request: FastifyRequest) => request.principal;

  r.post('/v1/admin/keys', {
    config: { scope: 'admin' },
    schema: {
      tags,
      summary: 'Create an API key (the key is in this response only)',
      body: CreateKeyBody,
      response: { 201: CreatedKey, ...errors },
    },
  }, async (request, reply) => {
    const principal = principalOf(request);
    const managed = managedTenant(principal);
    if (managed !== undefined && request.body.tenant !== managed) {
      throw new AgentSessionsError('forbidden', `this key manages only tenant ${managed}'s keys`);
    }
    const { record, key } = await parts.apiKeys.create({
      tenant: request.body.tenant,
      scopes: request.body.scopes,
      name: request.body.name ?? null,
    });
    return reply.status(201).header('cache-control', 'no-store').send({ ...keyJson(record), key });
  });

  r.get('/v1/admin/keys', {
    config: { scope: 'admin' },
    schema: {
      tags,
      summary: "List keys (a tenant admin sees its tenant's; a root admin all, or ?tenant=)",
      querystring: ListKeysQuery,
      response: { 200: KeyList, ...errors },
    },
  }, async (request) => {
    const managed = managedTenant(principalOf(request));
    const asked = request.query.tenant;
    if (managed !== undefined && asked !== undefined && asked !== managed) {
      throw new AgentSessionsError('forbidden', `this key manages only tenant ${managed}'s keys`);
    }
    return { keys: (await parts.apiKeys.list(managed ?? asked)).map(keyJson) };
  });

  r.delete('/v1/admin/keys/:id', {
    config: { scope: 'admin' },
    schema: {
      tags,
      summary: 'Revoke a key (refused on every instance from its next request)',
      params: KeyIdParams,
      response: { 200: Key, ...errors },
    },
  }, async (request) => {
    const { id } = request.params;
    const record = await parts.apiKeys.revoke(id.toLowerCase(), managedTenant(principalOf(request)));
    if (!record) throw keyNotFound(id);
    return keyJson(record);
  });
}
