/**
 * API-key authentication for /v1 routes: `Authorization: Bearer <key>` or `X-API-Key`.
 * Each route names the scope it needs in `config.scope`.
 */
import { isIPv6 } from 'node:net';
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

/**
 * The address wrong keys are counted against: an IPv4 address as it is, an IPv6 address by
 * its /64 (one subscriber usually holds a whole /64, so single addresses would not count).
 */
export function clientAddress(ip: string): string {
  const v4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (v4) return v4[1] as string;
  if (!isIPv6(ip)) return ip;
  const [head = '', tail = ''] = ip.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === '' ? [] : tail.split(':');
  const groups = ip.includes('::') ? [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right] : left;
  return `${groups
    .slice(0, 4)
    .map((g) => (Number.parseInt(g, 16) || 0).toString(16))
    .join(':')}::/64`;
}

export interface AuthOptions {
  disabled: boolean;
  /**
   * Counts wrong keys per client address (shared through Redis when configured). Wrong keys
   * from an address over its allowance get 429 until the window ends; right keys still pass.
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
  return sendProblem(reply, problem('rate_limited', 'too many requests with a wrong API key from this address', { retry_after: seconds }));
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
    const principal = key === null ? null : await keys.authenticate(key);
    if (!principal && failures && key !== null) {
      // A right key always passes: clients sharing an address (a NAT, a proxy without
      // TRUST_PROXY) are not locked out by one that keeps sending a revoked key.
      const address = clientAddress(request.ip);
      const wait = blocked.blockedFor(address);
      if (wait > 0) return tooManyFailures(reply, wait);
      const d = await failures.consume(`auth-failures:${address}`, { signal: request.abortSignal });
      if (!d.allowed) {
        blocked.block(address, d.resetMs);
        return tooManyFailures(reply, d.resetMs);
      }
    }
    if (!principal) {
      void reply.header('www-authenticate', 'Bearer realm="agent-sessions"');
      return sendProblem(reply, problem('unauthorized', 'a valid API key is required'));
    }
    if (!principal.scopes.includes(scope) && !principal.scopes.includes('admin')) {
      return sendProblem(reply, problem('forbidden', `this key lacks the ${scope} scope`));
    }
    request.principal = principal;
  });
}
