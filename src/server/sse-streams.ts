/**
 * The app's open Server-Sent Events streams (a session's output, the event feed). When the app
 * closes (SIGTERM on `serve`, or `app.close()`), each stream stops reading, writes a `retry:`
 * line and ends cleanly before the server drops its connections, so a client reconnects (with
 * Last-Event-ID) to another instance soon, instead of seeing a connection reset.
 */
import type { ServerResponse } from 'node:http';
import { UnavailableError } from '../core/errors.js';

/** The reconnect delay a closing server suggests (ms): soon, and to another instance behind the balancer. */
export const SHUTDOWN_RETRY_MS = 1_000;

/** The frame a stream ends with when the server closes. */
export const SHUTDOWN_FRAME = `retry: ${SHUTDOWN_RETRY_MS}\n: server shutting down; reconnect with Last-Event-ID\n\n`;

/** How long `closeAll` waits for the streams to write their last frame. */
const CLOSE_WAIT_MS = 2_000;

interface OpenStream {
  controller: AbortController;
  ended: Promise<void>;
}

export class SseStreams {
  private readonly open = new Set<OpenStream>();
  private closing = false;

  /**
   * Registers a stream: `signal` fires when the app closes (the stream should stop reading and
   * end with SHUTDOWN_FRAME). The registration ends when the response closes.
   */
  track(res: ServerResponse): AbortSignal {
    const controller = new AbortController();
    const ended = new Promise<void>((resolve) => res.once('close', () => resolve()));
    const stream = { controller, ended };
    this.open.add(stream);
    void ended.then(() => this.open.delete(stream));
    if (this.closing) controller.abort(new UnavailableError('the server is shutting down'));
    return controller.signal;
  }

  /** Asks every open stream to end, and waits (a bounded time) until they have. */
  async closeAll(): Promise<void> {
    this.closing = true;
    const streams = [...this.open];
    for (const s of streams) s.controller.abort(new UnavailableError('the server is shutting down'));
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(streams.map((s) => s.ended)),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, CLOSE_WAIT_MS);
      }),
    ]);
    clearTimeout(timer);
  }
}
