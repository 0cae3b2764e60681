/**
 * A server that stops (SIGTERM on `serve`) ends its open Server-Sent Events streams — a
 * session's output and the event feed — with a `retry:` line and a clean end of the response,
 * before it drops its connections, so clients reconnect elsewhere at once. Also `app.close()`
 * in a process that embeds the app.
 */
import type { FastifyInstance } from 'fastify';
import { afterAll, describe, expect, it } from 'vitest';
import { createSessions, type Sessions } from '../../src/internal.js';
import { buildApp } from '../../src/server/app.js';
import { SHUTDOWN_RETRY_MS } from '../../src/server/sse-streams.js';
import { startServer, type ServerProcess } from '../setup/server-process.js';
import { freshDatabase, requireServices, uniqueToken, type FreshDatabase } from '../setup/harness.js';

const ADMIN = `shutdown-admin-${uniqueToken()}`;

interface OpenStream {
  /** Everything the server sent, once the response ended. */
  text: Promise<string>;
  /** Resolves once the stream's first bytes arrived (it is open on the server). */
  opened: Promise<void>;
}

/** Opens an SSE stream and reads it to its end; rejects if the connection breaks instead of ending. */
function openStream(url: string, headers: Record<string, string>): OpenStream {
  let markOpened: () => void = () => undefined;
  const opened = new Promise<void>((resolve) => {
    markOpened = resolve;
  });
  const text = (async () => {
    const res = await fetch(url, { headers: { accept: 'text/event-stream', ...headers }, signal: AbortSignal.timeout(30_000) });
    expect(res.status).toBe(200);
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    let all = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return all;
      all += decoder.decode(value, { stream: true });
      markOpened();
    }
  })();
  return { text, opened };
}

describe.skipIf(!requireServices(['postgres'], 'http/sse-shutdown'))('SSE streams on shutdown', () => {
  let db: FreshDatabase | null = null;
  let server: ServerProcess | null = null;
  let sessions: Sessions | null = null;
  let app: FastifyInstance | null = null;

  afterAll(async () => {
    await server?.stop('SIGKILL').catch(() => undefined);
    await app?.close().catch(() => undefined);
    await sessions?.close().catch(() => undefined);
    await db?.drop();
  });

  it('SIGTERM: the output stream and the event feed end with retry: before the connection ends', async () => {
    db = await freshDatabase();
    server = await startServer({ env: { DATABASE_URL: db.url, ADMIN_API_KEY: ADMIN, SSE_HEARTBEAT_MS: '60000' }, timeoutMs: 90_000 });
    const headers = { authorization: `Bearer ${ADMIN}` };
    const created = await fetch(`${server.url}/v1/sessions`, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: '{}' });
    const { id } = (await created.json()) as { id: string };

    // A session with no run: its stream waits for output; the feed waits for events.
    const output = openStream(`${server.url}/v1/sessions/${id}/stream`, headers);
    const feed = openStream(`${server.url}/v1/events`, headers);
    await Promise.all([output.opened, feed.opened]);

    const exited = server.stop('SIGTERM');
    const [outputText, feedText] = await Promise.all([output.text, feed.text]);
    expect(await exited).toBe(0);

    const hint = `retry: ${SHUTDOWN_RETRY_MS}\n`;
    expect(outputText).toContain(': stream open');
    expect(outputText.endsWith(`${hint}: server shutting down; reconnect with Last-Event-ID\n\n`)).toBe(true);
    expect(feedText).toContain(': connected');
    expect(feedText.endsWith(`${hint}: server shutting down; reconnect with Last-Event-ID\n\n`)).toBe(true);
    server = null;
  });

  it('app.close(): the same, in a process that embeds the app', async () => {
    sessions = await createSessions({ env: { DATA_DIR: ':memory:', ADMIN_API_KEY: ADMIN, RUN_SWEEP_INTERVAL_MS: '0' } });
    app = await buildApp({ sessions });
    const base = await app.listen({ port: 0, host: '127.0.0.1' });
    const { id } = await sessions.create({});
    const headers = { authorization: `Bearer ${ADMIN}` };
    const output = openStream(`${base}/v1/sessions/${id}/stream`, headers);
    const feed = openStream(`${base}/v1/events`, headers);
    await Promise.all([output.opened, feed.opened]);

    await app.close();
    app = null;
    for (const text of await Promise.all([output.text, feed.text])) expect(text).toContain(`retry: ${SHUTDOWN_RETRY_MS}\n`);
  });
});
