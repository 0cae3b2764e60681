/**
 * `eventLoopSettle` (core/invalidation.ts): what rule 4 of docs/distributed.md rests on. Bytes
 * that reached one of this process's sockets before `settle()` was called have been read (their
 * 'data' handler ran) when it resolves, whether it was called from an I/O callback (two
 * immediates) or right after another wait resolved (one immediate). Real loopback sockets.
 */
import net from 'node:net';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventLoopSettle } from '../../src/core/invalidation.js';

describe('eventLoopSettle', () => {
  let server: net.Server;
  let sender: net.Socket;
  let receiver: net.Socket;
  let received = 0;

  beforeAll(async () => {
    server = net.createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const accepted = once(server, 'connection');
    sender = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    await once(sender, 'connect');
    [receiver] = (await accepted) as [net.Socket];
    receiver.setNoDelay(true);
    sender.setNoDelay(true);
    receiver.on('data', (chunk: Buffer) => {
      received += chunk.length;
    });
  });

  afterAll(async () => {
    sender.destroy();
    receiver.destroy();
    server.close();
    await once(server, 'close');
  });

  /** Writes one byte: on loopback libuv writes it at once, so it is in the receiver's buffer, not read yet. */
  function sendByte(): void {
    sender.write('x');
  }

  it('a wait started right after another resolved (one immediate) reads what had arrived', async () => {
    const settle = eventLoopSettle();
    for (let round = 0; round < 50; round++) {
      await settle();
      // In the callback that resolved the wait: this iteration's poll phase is over.
      const before = received;
      sendByte();
      await settle();
      expect(received, `round ${round}`).toBe(before + 1);
    }
  });

  it('a wait started in an I/O callback (two immediates) reads what arrived during that callback', async () => {
    const settle = eventLoopSettle();
    for (let round = 0; round < 50; round++) {
      const before = received;
      // A callback of the poll phase: the bytes arrive after that phase's poll began.
      const waited = await new Promise<number>((resolve) => {
        const echo = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
        echo.once('connect', () => {
          sendByte();
          void settle().then(() => resolve(received));
          echo.destroy();
        });
      });
      expect(waited, `round ${round}`).toBe(before + 1);
    }
  });
});
