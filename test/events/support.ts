/**
 * Helpers for the event tests: a throwaway nats-server, reading a whole JetStream stream,
 * polling for a condition, and a small mixed workload.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import pg from 'pg';
import type { Sessions } from '../../src/internal.js';
import { freePort, which } from '../setup/services.js';

/** Polls `check` until it returns a truthy value (resolved to it) or the time is up. */
export async function waitFor<T>(check: () => T | Promise<T>, what: string, timeoutMs = 20_000, everyMs = 25): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** A nats-server of this test's own, on a free port with its store in a temp dir. */
export class OwnNatsServer {
  readonly dir = mkdtempSync(path.join(os.tmpdir(), 'as-nats-'));
  private child: ChildProcess | null = null;
  private constructor(readonly port: number) {}

  static async start(): Promise<OwnNatsServer> {
    const server = new OwnNatsServer(await freePort());
    await server.start();
    return server;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const child = spawn(natsServerBinary() ?? 'nats-server', ['-js', '-a', '127.0.0.1', '-p', String(this.port), '-sd', this.dir], {
      stdio: 'ignore',
    });
    this.child = child;
    await waitFor(
      () =>
        new Promise<boolean>((resolve) => {
          const s = net.connect(this.port, '127.0.0.1');
          s.once('connect', () => {
            s.destroy();
            resolve(true);
          });
          s.once('error', () => resolve(false));
        }),
      'nats-server to listen',
      15_000,
    );
  }

  async stop(): Promise<void> {
    const child = this.child;
    this.child = null;
    if (!child || child.exitCode !== null) return;
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    await exited;
  }

  async dispose(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface StreamMessage {
  seq: number;
  subject: string;
  msgId: string | undefined;
  event: { id: number; type: string; tenant_id: string; session_id: string | null; occurred_at: string; data: unknown };
}

/** Every message in the stream, in stream order. */
export async function readStream(url: string, stream: string): Promise<StreamMessage[]> {
  const nc = await connect({ servers: url });
  try {
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info(stream);
    const total = info.state.messages;
    const out: StreamMessage[] = [];
    if (total === 0) return out;
    const consumer = await jetstream(nc).consumers.get(stream);
    while (out.length < total) {
      const batch = await consumer.fetch({ max_messages: Math.min(500, total - out.length), expires: 2_000 });
      for await (const m of batch) {
        out.push({ seq: m.seq, subject: m.subject, msgId: m.headers?.get('Nats-Msg-Id'), event: m.json() });
      }
    }
    return out;
  } finally {
    await nc.close();
  }
}

export async function deleteStream(url: string, stream: string): Promise<void> {
  let nc: NatsConnection | null = null;
  try {
    nc = await connect({ servers: url });
    const jsm = await jetstreamManager(nc);
    await jsm.streams.delete(stream);
  } catch {
    // Already gone, or the server is gone with it.
  } finally {
    await nc?.close();
  }
}

export interface OutboxRow {
  id: number;
  type: string;
  tenant_id: string;
  session_id: string | null;
  published_at: Date | null;
}

export async function outboxRows(url: string): Promise<OutboxRow[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const r = await client.query<OutboxRow>('SELECT id::int AS id, type, tenant_id, session_id, published_at FROM outbox ORDER BY id');
    return r.rows;
  } finally {
    await client.end();
  }
}

export async function unpublishedCount(url: string): Promise<number> {
  return (await outboxRows(url)).filter((r) => r.published_at === null).length;
}

/**
 * A mixed workload on `count` sessions (concurrently, each session's writes in sequence):
 * create, metadata update, items, status change, and terminate or purge for some. Returns
 * the ids. `pick` chooses the instance for each write (several instances share one database).
 */
export async function mixedWorkload(pick: (i: number) => Sessions, count: number, tenant = 'default'): Promise<string[]> {
  const ids: string[] = [];
  await Promise.all(
    Array.from({ length: count }, async (_, i) => {
      const opts = { tenant };
      const s = await pick(i).create({ title: `s${i}`, metadata: { n: i } }, opts);
      // By index, not by completion order, so callers know which ids were purged (i % 5 === 4).
      ids[i] = s.id;
      await pick(i + 1).update(s.id, { metadata: { step: 1 } }, opts);
      await pick(i + 2).items.append(s.id, [{ role: 'user', content: `hello ${i}` }, { role: 'assistant', content: 'hi' }], opts);
      await pick(i).update(s.id, { status: 'waiting_input' }, opts);
      await pick(i + 1).incrementCounters(s.id, { totalTurns: 1 }, opts);
      if (i % 3 === 0) await pick(i + 2).terminate(s.id, 'done', opts);
      if (i % 5 === 4) await pick(i).purge(s.id, opts);
    }),
  );
  return ids;
}

/** Asserts ids are strictly increasing per session; returns a message naming the first violation. */
export function perSessionOrderViolation(events: ReadonlyArray<{ id: number; session_id: string | null }>): string | null {
  const last = new Map<string, number>();
  for (const e of events) {
    if (e.session_id === null) continue;
    const prev = last.get(e.session_id);
    if (prev !== undefined && prev >= e.id) return `session ${e.session_id}: event ${e.id} after ${prev}`;
    last.set(e.session_id, e.id);
  }
  return null;
}

/** The nats-server program (Debian installs it in /usr/sbin, often not on PATH), or null. */
export function natsServerBinary(): string | null {
  return which('nats-server', ['/usr/sbin', '/usr/bin', '/usr/local/bin']);
}
