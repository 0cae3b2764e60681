/**
 * Lua scripts live in ./scripts as `<name>-<numkeys>.lua`. Each is read once, called by
 * SHA, and sent in full only when a server does not know it yet (after a restart, or on a
 * Cluster node that never saw it).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { RedisConnection } from './connection.js';

export class LuaScript {
  readonly sha: string;
  readonly numKeys: number;

  constructor(
    readonly name: string,
    readonly source: string,
  ) {
    const m = /-(\d+)$/.exec(name);
    if (!m?.[1]) throw new Error(`Lua script ${name} must be named <name>-<numkeys>`);
    this.numKeys = Number(m[1]);
    this.sha = createHash('sha1').update(source).digest('hex');
  }

  /** Reads `scripts/<name>.lua` next to this module. */
  static load(name: string): LuaScript {
    return new LuaScript(name, readFileSync(new URL(`./scripts/${name}.lua`, import.meta.url), 'utf8'));
  }

  async run(redis: RedisConnection, keys: string[], args: string[]): Promise<unknown> {
    if (keys.length !== this.numKeys) throw new Error(`${this.name} takes ${this.numKeys} keys, got ${keys.length}`);
    const options = { keys, arguments: args };
    try {
      return await redis.evalSha(this.sha, options);
    } catch (err) {
      if (!String((err as Error).message).startsWith('NOSCRIPT')) throw err;
      // EVAL also caches the script, so the next call goes by SHA again.
      return redis.eval(this.source, options);
    }
  }
}

/** Whether commands can be sent now (a client that is reconnecting fails them at once). */
export function redisUsable(redis: RedisConnection): boolean {
  return 'isReady' in redis ? redis.isReady : redis.isOpen;
}

/** Rejects when `promise` takes longer than `ms`, so a hung server cannot stall a request. */
export function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`redis call timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
