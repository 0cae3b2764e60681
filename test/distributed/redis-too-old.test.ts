/**
 * A Redis too old for agent-sessions makes createSessions fail, and fail clean: the Redis
 * connections it opened are closed, not left reconnecting. The old server is the real one
 * behind a proxy that reports its version as 5.x in INFO replies.
 */
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { createSessions } from '../../src/internal.js';
import { freshDatabase, requireServices, serviceUrl, uniqueKeyPrefix } from '../setup/harness.js';

const suite = 'distributed/redis-too-old';
const ready = requireServices(['postgres', 'redis'], suite);

/** Forwards to `target`, rewriting "redis_version:N." to "redis_version:5." (same length). */
async function versionRewritingProxy(target: URL): Promise<{ url: string; open: () => number; close: () => void }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    sockets.add(client);
    const upstream = net.connect(Number(target.port), target.hostname);
    client.on('close', () => {
      sockets.delete(client);
      upstream.destroy();
    });
    upstream.on('close', () => client.destroy());
    client.on('error', () => undefined);
    upstream.on('error', () => undefined);
    client.pipe(upstream);
    upstream.on('data', (d: Buffer) => client.write(d.toString('latin1').replace(/redis_version:\d\./g, 'redis_version:5.'), 'latin1'));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `redis://127.0.0.1:${port}`,
    open: () => sockets.size,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

describe.skipIf(!ready)(suite, () => {
  it('refuses Redis 5 and closes the connections it opened', async () => {
    const proxy = await versionRewritingProxy(new URL(serviceUrl('redis')));
    const db = await freshDatabase();
    try {
      await expect(
        createSessions({ env: { DATABASE_URL: db.url, REDIS_URL: proxy.url, KEY_PREFIX: uniqueKeyPrefix() } }),
      ).rejects.toThrow(/too old/);
      for (let waited = 0; proxy.open() > 0; waited += 20) {
        if (waited > 3_000) throw new Error(`${proxy.open()} redis connection(s) left open`);
        await sleep(20);
      }
    } finally {
      proxy.close();
      await db.drop();
    }
  });
});
