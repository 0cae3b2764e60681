/**
 * Key management under /v1/admin/keys (admin scope). A root admin key (ADMIN_API_KEY, the
 * embedded first-start key, or one made with `keys create --root`) manages every tenant's
 * keys; any other admin key manages only its own tenant's, and another tenant's key is
 * "not found" to it. Keys made here are never root.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type, type Static } from 'typebox';
import { AgentSessionsError } from '../../core/errors.js';
import type { ApiKeyRecord, Principal } from '../../core/api-keys.js';
import type { Sessions } from '../../sessions.js';
import { Problem } from '../schemas.js';

const ScopeSchema = Type.Union([Type.Literal('read'), Type.Literal('write'), Type.Literal('runs'), Type.Literal('admin')]);
const Tenant = Type.String({ pattern: '^[\\w.-]{1,64}$', description: 'Tenant name: letters, digits, _ . - (1 to 64)' });

const CreateKeyBody = Type.Object(
  {
    tenant: Tenant,
    scopes: Type.Array(ScopeSchema, { minItems: 1, maxItems: 4, uniqueItems: true }),
    name: Type.Optional(Type.Union([Type.String({ maxLength: 200 }), Type.Null()])),
  },
  { additionalProperties: false },
);

const KeyFields = {
  id: Type.String(),
  tenant: Type.String(),
  scopes: Type.Array(Type.String()),
  name: Type.Union([Type.String(), Type.Null()]),
  prefix: Type.String(),
  root: Type.Boolean(),
  created_at: Type.String({ format: 'date-time' }),
  revoked_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
};
// The hash is not in the response schema, so it can never leave the server.
const Key = Type.Object(KeyFields);
const CreatedKey = Type.Object({ ...KeyFields, key: Type.String({ description: 'The key itself: shown only in this response' }) });
const KeyList = Type.Object({ keys: Type.Array(Key) });
const KeyIdParams = Type.Object({ id: Type.String({ format: 'uuid' }) }, { additionalProperties: false });
const ListKeysQuery = Type.Object({ tenant: Type.Optional(Tenant) }, { additionalProperties: false });

export type CreateKeyJson = Static<typeof CreateKeyBody>;
export type ApiKeyJson = Static<typeof Key>;
export type CreatedKeyJson = Static<typeof CreatedKey>;
export type KeyListJson = Static<typeof KeyList>;

const errors = { 400: Problem, 401: Problem, 403: Problem, 404: Problem };
const tags = ['admin'];

function keyJson(k: ApiKeyRecord) {
  return {
    id: k.id,
    tenant: k.tenantId,
    scopes: k.scopes,
    name: k.name,
    prefix: k.prefix,
    root: k.root,
    created_at: k.createdAt,
    revoked_at: k.revokedAt,
  };
}

/** The tenant whose keys this principal may manage, or undefined for all of them. */
function managedTenant(principal: Principal): string | undefined {
  return principal.root ? undefined : principal.tenant;
}

function keyNotFound(id: string): AgentSessionsError {
  return new AgentSessionsError('key_not_found', `key ${id} not found`, { details: { id } });
}

export function adminKeyRoutes(app: FastifyInstance, sessions: Sessions): void {
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
    const { record, key } = await sessions.apiKeys.create({
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
    return { keys: (await sessions.apiKeys.list(managed ?? asked)).map(keyJson) };
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
    const record = await sessions.apiKeys.revoke(id.toLowerCase(), managedTenant(principalOf(request)));
    if (!record) throw keyNotFound(id);
    return keyJson(record);
  });
}
