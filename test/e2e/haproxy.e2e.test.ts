/**
 * The deployment's balancer, for real: three `agent-sessions serve` processes (the built CLI,
 * as the image runs it) on one fresh PostgreSQL database, one Redis key prefix and one NATS
 * stream, behind the real HAProxy running deploy/haproxy.cfg. A run is started through
 * HAProxy; its output streams through HAProxy from an instance that is not the run's owner;
 * that instance is SIGKILLed mid-stream; the client reconnects through HAProxy with
 * Last-Event-ID and gets the rest from another instance: the whole output, no gap, no
 * duplicate, and the run completes on its owner.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { builtPackage } from '../setup/built-package.js';
import {
  freshDatabase,
  requireBinaries,
  requireServices,
  serviceUrl,
  uniqueKeyPrefix,
  uniqueNatsNames,
  uniqueToken,
  within,
  type FreshDatabase,
} from '../setup/harness.js';
import { haproxyBinary, startHaproxy, type HaproxyProcess } from '../setup/haproxy.js';
import { startServer, type ServerProcess } from '../setup/server-process.js';

const SUITE = 'e2e/haproxy';
/** The CLI as package.json's bin names it: what the image's start command runs. */
const BIN = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { bin: Record<string, string> }).bin['agent-sessions'] as string;
const ADMIN = `haproxy-e2e-admin-${uniqueToken()}`;
const FIXTURE = fileURLToPath(new URL('../fixtures/echo-agent.mjs', import.meta.url));
/** haproxy.cfg's server names; the instances carry them as INSTANCE_ID. */
const NAMES = ['a', 'b', 'c'] as const;
/** The run: this many words, this far apart (about 6 s, so the kill lands mid-run). */
const WORDS = 150;
const WORD_DELAY_MS = 40;
/** Words read from the first stream before its instance is killed. */
const KILL_AFTER_WORDS = 10;

const ready =
  requireServices(['postgres', 'redis', 'nats'], SUITE) && requireBinaries(['haproxy'], SUITE, () => haproxyBinary());

interface Frame {
  seq: number;
  type: string;
  data: Record<string, unknown>;
}

interface OpenStream {
  /** X-Instance-Id of the response: the instance serving the stream. */
  instance: string;
  frames: AsyncGenerator<Frame>;
  close(): void;
}

/** Parses Server-Sent Events frames (`id:`, `event:`, `data:`; comments skipped) from a body. */
async function* sseFrames(body: ReadableStream<Uint8Array>): AsyncGenerator<Frame> {
  const decoder = new TextDecoder();
  const reader = body.getReader();
  let buffer = '';
  let data: string[] = [];
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl).replace(/\r$/, '');
        buffer = buffer.slice(nl + 1);
        if (line === '') {
          // The data line is the whole event (seq, type, data), as the client library reads it.
          if (data.length > 0) yield JSON.parse(data.join('\n')) as Frame;
          data = [];
        } else if (line.startsWith('data:')) {
          data.push(line.slice(5).replace(/^ /, ''));
        }
      }
    }
  } finally {
    reader.releaseLock();
  }
}

describe.skipIf(!ready)(SUITE, { timeout: 300_000 }, () => {
  let db: FreshDatabase | null = null;
  const servers = new Map<string, ServerProcess>();
  let haproxy: HaproxyProcess | null = null;

  const headers = (extra: Record<string, string> = {}) => ({ authorization: `Bearer ${ADMIN}`, ...extra });

  async function call<T>(method: string, path: string, body?: unknown): Promise<{ status: number; instance: string | null; json: T }> {
    const res = await fetch(`${haproxy?.url}${path}`, {
      method,
      headers: headers(body === undefined ? {} : { 'content-type': 'application/json' }),
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(15_000),
    });
    return { status: res.status, instance: res.headers.get('x-instance-id'), json: (await res.json()) as T };
  }

  /**
   * Opens the session's stream through HAProxy, again and again until it is served by an
   * instance not in `avoid` and answers 200. Connection failures and 5xx (HAProxy has not yet
   * seen an instance die) are tried again until the deadline.
   */
  async function openStream(sessionId: string, lastEventId: number | null, avoid: ReadonlySet<string>): Promise<OpenStream> {
    const deadline = Date.now() + 30_000;
    const tries: string[] = [];
    for (;;) {
      const controller = new AbortController();
      let refused: Error | null = null;
      try {
        const res = await fetch(`${haproxy?.url}/v1/sessions/${sessionId}/stream`, {
          headers: headers({ accept: 'text/event-stream', ...(lastEventId === null ? {} : { 'last-event-id': String(lastEventId) }) }),
          // A stream that never ends fails the test instead of hanging it (the run takes seconds).
          signal: AbortSignal.any([controller.signal, AbortSignal.timeout(60_000)]),
        });
        const instance = res.headers.get('x-instance-id') ?? '';
        tries.push(`${res.status} from ${instance || 'haproxy'}`);
        if (res.status === 200 && res.body && !avoid.has(instance)) {
          return { instance, frames: sseFrames(res.body), close: () => controller.abort() };
        }
        if (res.status !== 200 && res.status < 500) refused = new Error(`stream answered ${res.status}: ${await res.text()}`);
        controller.abort();
      } catch (err) {
        tries.push(`failed: ${(err as Error).message}`);
      }
      if (refused) throw refused;
      if (Date.now() > deadline) throw new Error(`no stream from an instance other than ${[...avoid].join(', ')}: ${tries.join('; ')}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  beforeAll(async () => {
    const pkg = await builtPackage();
    db = await freshDatabase();
    const nats = uniqueNatsNames();
    const env = {
      DATABASE_URL: db.url,
      REDIS_URL: serviceUrl('redis'),
      NATS_URL: serviceUrl('nats'),
      KEY_PREFIX: uniqueKeyPrefix(),
      NATS_STREAM: nats.stream,
      NATS_SUBJECT_PREFIX: nats.subjectPrefix,
      ADMIN_API_KEY: ADMIN,
      // As compose sets it: the client address is the one HAProxy appends to X-Forwarded-For.
      TRUST_PROXY: '1',
      SSE_HEARTBEAT_MS: '500',
      AGENT_COMMAND: `"${process.execPath}" "${FIXTURE}"`,
    };
    // Started together, as compose starts them: one migrates, the others wait on its lock.
    const started = await Promise.allSettled(
      NAMES.map((name) =>
        startServer({ env: { ...env, INSTANCE_ID: name }, cli: [path.join(pkg.dir, BIN)], timeoutMs: 90_000 }),
      ),
    );
    started.forEach((s, i) => {
      if (s.status === 'fulfilled') servers.set(NAMES[i] as string, s.value);
    });
    const failed = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) throw failed.reason;
    const backends = NAMES.map((n) => `127.0.0.1:${servers.get(n)?.port}`) as [string, string, string];
    haproxy = await startHaproxy(backends);
    // Every instance in rotation: round robin answers from all three.
    const seen = new Set<string>();
    await within(20_000, async () => {
      const res = await fetch(`${haproxy?.url}/ready`, { signal: AbortSignal.timeout(5_000) }).catch(() => null);
      const instance = res?.headers.get('x-instance-id');
      if (res?.status === 200 && instance) seen.add(instance);
      return seen.size === NAMES.length;
    }, 20);
  }, 300_000);

  afterAll(async () => {
    await haproxy?.stop();
    await Promise.all([...servers.values()].map((s) => s.stop('SIGTERM').catch(() => undefined)));
    await db?.drop();
  });

  it('a stream cut by SIGKILL of its instance resumes through HAProxy on another: all output, no gap, no duplicate', async () => {
    const session = await call<{ id: string }>('POST', '/v1/sessions', {});
    expect(session.status).toBe(201);
    const id = session.json.id;
    const start = await call<{ id: string; owner: string | null; status: string }>('POST', `/v1/sessions/${id}/runs`, {
      input: { mode: 'stream', count: WORDS, delay_ms: WORD_DELAY_MS },
    });
    expect(start.status).toBe(201);
    const runId = start.json.id;
    // The owner is in the start answer, or in the run once a worker claimed it.
    let owner = start.json.owner;
    await within(10_000, async () => {
      owner ??= (await call<{ owner: string | null }>('GET', `/v1/sessions/${id}/runs/${runId}`)).json.owner;
      return owner !== null;
    }, 20);
    expect(NAMES).toContain(owner);

    // The first stream, from an instance that is not the owner (HAProxy picks; we reconnect
    // until it picks another one).
    const first = await openStream(id, null, new Set([owner as string]));
    const killed = first.instance;
    expect(killed).not.toBe(owner);
    const received: Frame[] = [];
    let cut: unknown = null;
    try {
      for await (const frame of first.frames) {
        received.push(frame);
        if (received.filter((f) => f.type === 'text').length === KILL_AFTER_WORDS) {
          await servers.get(killed)?.stop('SIGKILL');
        }
      }
    } catch (err) {
      cut = err;
    } finally {
      first.close();
    }
    // The stream ended because its instance died, not because the run ended.
    const beforeKill = received.length;
    expect(received.filter((f) => f.type === 'text').length).toBeGreaterThanOrEqual(KILL_AFTER_WORDS);
    expect(received.map((f) => f.type)).not.toContain('done');
    console.log(`[${SUITE}] run owned by ${owner}; streamed from ${killed} (killed after ${beforeKill} events; ${cut === null ? 'stream ended' : `read failed: ${(cut as Error).message}`})`);

    // HAProxy takes the dead instance out of rotation (its checks, or the refused connection).
    await within(20_000, async () => haproxy?.output().includes(`agent_sessions/${killed} is DOWN`) ?? false, 20);

    // Reconnect through HAProxy where the client left off.
    const lastSeq = received.at(-1)?.seq ?? null;
    const second = await openStream(id, lastSeq, new Set([killed]));
    expect(servers.has(second.instance)).toBe(true);
    expect(second.instance).not.toBe(killed);
    for await (const frame of second.frames) received.push(frame);
    console.log(`[${SUITE}] resumed on ${second.instance} after seq ${lastSeq}: ${received.length - beforeKill} more events`);

    // The whole output, in order: status, every word once, done.
    const seqs = received.map((f) => f.seq);
    expect(seqs).toEqual(seqs.map((_, i) => (seqs[0] ?? 0) + i));
    expect(received[0]).toMatchObject({ type: 'status' });
    expect(received.filter((f) => f.type === 'text').map((f) => f.data.text)).toEqual(
      Array.from({ length: WORDS }, (_, i) => `word ${i}`),
    );
    expect(received.at(-1)).toMatchObject({ type: 'done', data: { status: 'completed', run_id: runId } });
    expect(received.length - beforeKill).toBeGreaterThan(1);

    const run = await call<{ status: string; owner: string }>('GET', `/v1/sessions/${id}/runs/${runId}`);
    expect(run.json).toMatchObject({ status: 'completed', owner });
    expect(run.instance).not.toBe(killed);
  });
});
