/**
 * Redis connections (node-redis v5), standalone or Cluster, and the key layout. Every key of
 * one session shares the hash tag `{<session id>}`, so all of them live on one Cluster slot
 * and multi-key scripts work.
 */
import { hash } from 'node:crypto';
import { createClient, createCluster, type RedisClientType, type RedisClusterType } from 'redis';

export type RedisConnection = RedisClientType | RedisClusterType;

export interface RedisConnectionOptions {
  /** redis://host:port, or several comma-separated node URLs for a Cluster. */
  url: string;
  /** Treat the URL(s) as Cluster seed nodes. */
  cluster?: boolean;
  /** Milliseconds to wait for a connection before a command fails. */
  connectTimeoutMs?: number;
  /**
   * Milliseconds a command may wait for its reply, applied by GuardedRedis (node-redis's own
   * `timeout` option only covers the wait to be written, and costs an AbortSignal per call).
   */
  commandTimeoutMs?: number;
}

export function redisUrls(url: string): string[] {
  return url.split(',').map((u) => u.trim()).filter(Boolean);
}

export function isClusterUrl(options: Pick<RedisConnectionOptions, 'url' | 'cluster'>): boolean {
  return options.cluster === true || redisUrls(options.url).length > 1;
}

/** Socket options of every connection: connect timeout, reconnect with capped backoff forever. */
function socketOptions(options: RedisConnectionOptions) {
  return {
    connectTimeout: options.connectTimeoutMs ?? 2_000,
    reconnectStrategy: (retries: number) => Math.min(50 * 2 ** retries, 2_000),
  };
}

/** Creates (but does not connect) a client. Reconnects with capped backoff forever. */
export function createRedisConnection(options: RedisConnectionOptions): RedisConnection {
  const urls = redisUrls(options.url);
  const socket = socketOptions(options);
  if (isClusterUrl(options)) {
    return createCluster({
      rootNodes: urls.map((url) => ({ url })),
      // Without the offline queue a command to a disconnected node fails at once instead of
      // waiting for a reconnect, which is what lets the breaker keep calls fast.
      defaults: { socket, disableOfflineQueue: true },
    }) as unknown as RedisClusterType;
  }
  return createClient({ url: urls[0], socket, disableOfflineQueue: true }) as unknown as RedisClientType;
}

/**
 * A second standalone connection for SUBSCRIBE (a subscribed connection takes no other
 * commands). PUBLISH on a Cluster reaches every node, so one node is enough to listen on.
 */
export function createRedisSubscriber(options: RedisConnectionOptions): RedisClientType {
  return createClient({
    url: redisUrls(options.url)[0],
    socket: socketOptions(options),
    disableOfflineQueue: true,
  }) as unknown as RedisClientType;
}

/**
 * The commands the adapters use. Both client kinds have them with the same shape; a Cluster
 * routes each by its first key, which is why every call here names a key.
 */
export function commandsOf(connection: RedisConnection): RedisClientType {
  return connection as RedisClientType;
}

/**
 * Key names under a prefix. A session's keys carry a hash tag made from its key
 * (`sessionKey`: tenant/id) by SHA-256, base64url, 22 characters (132 bits): the same length
 * for every id, and no tenant name or client-chosen id (which may be personal data) ever
 * stands in a key name, so an erased session's tombstone names nobody.
 */
export class RedisKeys {
  /**
   * Session key → its Redis key name, remembered (bounded; emptied when full): every Redis
   * read builds the name, and the digest was about 6 % of a Redis hit's CPU, the string
   * building after it another 1 %. The names are the same across releases, so the digest
   * itself stays.
   */
  private readonly names = new Map<string, string>();

  constructor(readonly prefix: string) {}

  session(key: string): string {
    let name = this.names.get(key);
    if (name === undefined) {
      name = `${this.prefix}s:{${redisSessionTag(key)}}`;
      if (this.names.size >= MAX_REMEMBERED_NAMES) this.names.clear();
      this.names.set(key, name);
    }
    return name;
  }

  /** Any per-session key: `<prefix>s:{<tag>}:<suffix>`, on the session's slot. */
  sessionPart(key: string, suffix: string): string {
    return `${this.session(key)}:${suffix}`;
  }

  global(name: string): string {
    return `${this.prefix}${name}`;
  }
}

/**
 * The hash tag of a session's Redis keys: SHA-256 of its key (`<tenant>/<id>`), base64url, 22
 * characters.
 */
export function redisSessionTag(key: string): string {
  return hash('sha256', key, 'base64url').slice(0, 22);
}

const MAX_REMEMBERED_NAMES = 16_384;
