/**
 * A Redis connection whose commands are spans (OpenTelemetry database conventions): named by
 * the command (`GET`, `EVALSHA`), never with a key or a value. Only built when tracing is
 * on; a command sent by background work alone (a lease renewal, a poll) is traced only inside
 * a span. The connection's other members (events, connect, close) pass through untouched.
 */
import { errorType, type SpanAttributes, type Tracing } from '../../core/tracing.js';
import { redisUrls } from './connection.js';

/** Where the commands go (a standalone server); null for a Cluster, whose nodes vary. */
export interface RedisServer {
  address: string;
  port: number;
  /** The database number (`/2` in the URL), when not 0. */
  namespace: string | null;
}

export function redisServer(url: string, cluster: boolean): RedisServer | null {
  const urls = redisUrls(url);
  if (cluster || urls.length !== 1) return null;
  try {
    const u = new URL(urls[0] as string);
    const db = u.pathname.replace(/^\//, '');
    return { address: u.hostname || 'localhost', port: Number(u.port || 6379), namespace: /^[1-9]\d*$/.test(db) ? db : null };
  } catch {
    return null;
  }
}

/** Methods whose uppercase name is a command but that return no reply to wait for. */
const NOT_A_CALL = new Set(['multi', 'MULTI', 'scanIterator']);

/** The command a method sends (`getEx` → `GETEX`, `clientId` → `CLIENT ID`), or null for a method that is no command. */
function commandOf(client: Record<string, unknown>, method: string): string | null {
  if (NOT_A_CALL.has(method)) return null;
  const upper = method.toUpperCase();
  if (typeof client[upper] === 'function') return upper;
  const snake = method.replace(/[A-Z]/g, '_$&').toUpperCase();
  return typeof client[snake] === 'function' ? snake.replaceAll('_', ' ') : null;
}

export function tracedRedis<C extends object>(client: C, tracing: Tracing, server: RedisServer | null): C {
  const base: SpanAttributes = { 'db.system.name': 'redis' };
  if (server) {
    base['server.address'] = server.address;
    base['server.port'] = server.port;
    if (server.namespace !== null) base['db.namespace'] = server.namespace;
  }
  const call = (command: string, send: () => Promise<unknown>) =>
    tracing.span(command, { kind: 'client', requireParent: true, attributes: { ...base, 'db.operation.name': command } }, async (span) => {
      try {
        return await send();
      } catch (err) {
        span.fail(errorType(err));
        throw err;
      }
    });
  const members = new Map<string, unknown>();
  return new Proxy(client, {
    get(target, property) {
      // Read on the client itself, so its getters and private fields see the real object.
      const value: unknown = Reflect.get(target, property, target);
      if (typeof property !== 'string' || typeof value !== 'function') return value;
      let member = members.get(property);
      if (member === undefined) {
        const fn = (value as (...args: unknown[]) => unknown).bind(target);
        if (property === 'sendCommand') {
          member = (args: unknown[], ...rest: unknown[]) => call(String(args[0] ?? 'COMMAND').toUpperCase(), () => fn(args, ...rest) as Promise<unknown>);
        } else {
          const command = commandOf(target as Record<string, unknown>, property);
          member = command === null ? fn : (...args: unknown[]) => call(command, () => fn(...args) as Promise<unknown>);
        }
        members.set(property, member);
      }
      return member;
    },
  });
}
