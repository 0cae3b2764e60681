/**
 * API-key authentication for /v1 routes: `Authorization: Bearer <key>` or `X-API-Key`.
 * Each route names the scope it needs in `config.scope`.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest, FastifySchema, HTTPMethods } from 'fastify';
import { SCOPES, type ApiKeyService, type Principal, type Scope } from '../core/api-keys.js';
import type { RateLimiter } from '../core/rate-limit.js';
import { problem, sendProblem } from './errors.js';

/** A route as registered: what the scope audit checked, and what tests enumerate. */
export interface RouteEntry {
  method: string;
  url: string;
  scope: Scope | undefined;
  schema: FastifySchema | undefined;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Every route registered after auth, in order (HEAD routes Fastify adds included). */
    apiRoutes: readonly RouteEntry[];
  }
  interface FastifyRequest {
    principal: Principal;
  }
  interface FastifyContextConfig {
    /** The scope a key needs for this route; routes without one are public. */
    scope?: Scope;
  }
}

const NO_AUTH_PRINCIPAL: Principal = Object.freeze({ keyId: 'no-auth', tenant: 'default', scopes: SCOPES, root: true });

/** Paths under this prefix hold tenant data: a route there without a scope would be public. */
const PROTECTED_PREFIX = '/v1/';

export function presentedKey(request: FastifyRequest): string | null {
  const auth = request.headers.authorization;
  if (typeof auth === 'string') {
    const m = /^Bearer\s+(\S{1,512})\s*$/i.exec(auth);
    return m?.[1] ?? null;
  }
  const header = request.headers['x-api-key'];
  return typeof header === 'string' && header.length > 0 && header.length <= 512 ? header : null;
}

export interface AuthOptions {
  disabled: boolean;
  /**
   * Counts wrong keys per client address (shared through Redis when configured). An address
   * over its allowance is refused with 429 before any key it presents is checked, so guessing
   * keys stops paying off; it learns nothing about a key until the window ends.
   */
  failures?: RateLimiter | null;
}

/** Addresses this instance has seen go over their failure allowance, until when (epoch ms). */
class BlockedAddresses {
  private readonly until = new Map<string, number>();

  blockedFor(address: string, now = Date.now()): number {
    const until = this.until.get(address);
    if (until === undefined) return 0;
    if (until > now) return until - now;
    this.until.delete(address);
    return 0;
  }

  block(address: string, ms: number, now = Date.now()): void {
    if (this.until.size >= 10_000) {
      for (const [a, t] of this.until) if (t <= now) this.until.delete(a);
    }
    // Under a flood of distinct addresses the map stays bounded; the shared counter still limits.
    if (this.until.size < 10_000) this.until.set(address, now + ms);
  }
}

function tooManyFailures(reply: FastifyReply, ms: number): FastifyReply {
  const seconds = Math.max(1, Math.ceil(ms / 1000));
  void reply.header('retry-after', String(seconds));
  return sendProblem(reply, problem(429, 'rate_limited', 'too many requests with a wrong API key from this address', { retry_after: seconds }));
}

export function registerAuth(app: FastifyInstance, keys: ApiKeyService, options: AuthOptions): void {
  const failures = options.failures ?? null;
  const blocked = new BlockedAddresses();
  app.decorateRequest('principal', null as unknown as Principal);
  const routes: RouteEntry[] = [];
  app.decorate('apiRoutes', routes);
  // The scope audit: a /v1 route that forgets `config.scope` fails at registration, so a
  // route added later can never be public by accident.
  app.addHook('onRoute', (route) => {
    const scope = (route.config as { scope?: Scope } | undefined)?.scope;
    if (route.url.startsWith(PROTECTED_PREFIX) && (scope === undefined || !SCOPES.includes(scope))) {
      throw new Error(`route ${String(route.method)} ${route.url} needs config.scope (one of ${SCOPES.join(', ')})`);
    }
    const methods = (Array.isArray(route.method) ? route.method : [route.method]) as HTTPMethods[];
    for (const method of methods) routes.push({ method, url: route.url, scope, schema: route.schema });
  });
  app.addHook('onRequest', async (request, reply) => {
    const scope = request.routeOptions.config?.scope;
    if (scope === undefined) return;
    if (options.disabled) {
      request.principal = NO_AUTH_PRINCIPAL;
      return;
    }
    const key = presentedKey(request);
    if (failures && key !== null) {
      const wait = blocked.blockedFor(request.ip);
      if (wait > 0) return tooManyFailures(reply, wait);
    }
    const principal = key === null ? null : await keys.authenticate(key);
    if (!principal && failures && key !== null) {
      const d = await failures.consume(`auth-failures:${request.ip}`, { signal: request.abortSignal });
      if (!d.allowed) {
        blocked.block(request.ip, d.resetMs);
        return tooManyFailures(reply, d.resetMs);
      }
    }
    if (!principal) {
      void reply.header('www-authenticate', 'Bearer realm="agent-sessions"');
      return sendProblem(reply, problem(401, 'unauthorized', 'a valid API key is required'));
    }
    if (!principal.scopes.includes(scope) && !principal.scopes.includes('admin')) {
      return sendProblem(reply, problem(403, 'forbidden', `this key lacks the ${scope} scope`));
    }
    request.principal = principal;
  });
}
