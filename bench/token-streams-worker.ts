/**
 * A child process of the token-stream benchmark (bench/token-streams.ts), driven over IPC.
 *
 * - `agent-sessions` producer (instance A): the library on the bench's database and Redis;
 *   each stream is a run whose runner emits `rate` small `text` events a second for `seconds`,
 *   awaiting each emit (its seq is committed) before the next, as a runner relaying a model's
 *   tokens does. Every event carries the time it was due, so a late emit counts as latency.
 *   The runs are started in `prepare` and wait at a gate that `go` opens, as the anchor's
 *   streams are created in `prepare` and wait for their plan. Both systems' streams run on
 *   one schedule: stream i of n emits at startAt + (i/n + k) intervals.
 * - `resumable` producer: the same schedule through Vercel's `resumable-stream` (node-redis),
 *   its own output drained in-process as the original request's response would be.
 * - `resumable-reader` (instance B of the anchor): an HTTP server whose GET /s/:id answers
 *   `resumeExistingStream(id)` as text/event-stream.
 *
 * Messages in: { cmd: 'prepare', streams } → { ids }; { cmd: 'go', rate, seconds, warmup } → { emitted,
 * failed }; { cmd: 'close' }. The reader answers { port } once it listens.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { createClient } from 'redis';
import { createResumableStreamContext, type Publisher, type ResumableStreamContext, type Subscriber } from 'resumable-stream/generic';
import type { Sessions } from '../src/app/sessions.js';
import { load } from './built.js';
import { quantile } from './token-streams.js';

// The compiled package, as the operations bench runs it (bench/built.ts).
const { createSessions } = await load<typeof import('../src/app/assemble.js')>('app/assemble');

type Message = { cmd: 'prepare'; streams: number } | { cmd: 'go'; rate: number; seconds: number; warmup: number } | { cmd: 'close' };

const role = process.env.BENCH_ROLE as 'agent-sessions' | 'resumable' | 'resumable-reader';
const send = (m: unknown) => process.send?.(m);
const now = () => performance.timeOrigin + performance.now();

/** What `go` hands every stream: its pace, and the common instant the schedule starts at. */
interface Plan {
  rate: number;
  seconds: number;
  /** Seconds emitted before the measured ones; their events carry `w: 1`. */
  warmup: number;
  startAt: number;
}

/** Time from `go` to the first event, so that every stream starts on the same clock. */
const START_DELAY_MS = 50;

/**
 * Stream i of n starts i/n of an interval after the common start, so the streams' events are
 * spread over each interval as independent streams' are, not due all at the same instant.
 */
function phase(i: number, n: number, interval: number): number {
  return (i / n) * interval;
}

/** The q-quantile of `values` (token-streams.ts's, on a sorted copy). */
const quantileOf = (values: number[], q: number): number => quantile(Float64Array.from(values).sort(), q);

/** Waits until `due` (epoch ms) without drifting: the schedule is absolute. */
async function until(due: number): Promise<void> {
  const wait = due - now();
  if (wait > 1) await sleep(wait);
}

async function resumableContext(): Promise<{ ctx: ResumableStreamContext; close(): Promise<void> }> {
  const url = process.env.REDIS_URL!;
  const publisher = createClient({ url });
  const subscriber = createClient({ url });
  await Promise.all([publisher.connect(), subscriber.connect()]);
  // Its own interfaces over node-redis clients we connect (its `redis` default would read REDIS_URL itself).
  const pub: Publisher = {
    connect: async () => undefined,
    publish: (channel, message) => publisher.publish(channel, message),
    set: (key, value, options) => (options?.EX ? publisher.set(key, value, { EX: options.EX }) : publisher.set(key, value)),
    get: (key) => publisher.get(key),
    incr: (key) => publisher.incr(key),
  };
  const sub: Subscriber = {
    connect: async () => undefined,
    subscribe: (channel, callback) => subscriber.subscribe(channel, callback),
    unsubscribe: (channel) => subscriber.unsubscribe(channel),
  };
  const ctx = createResumableStreamContext({ waitUntil: null, keyPrefix: process.env.BENCH_KEY_PREFIX!, publisher: pub, subscriber: sub });
  return { ctx, close: async () => void (await Promise.allSettled([publisher.quit(), subscriber.quit()])) };
}

async function agentSessionsProducer(): Promise<void> {
  const sessions: Sessions = await createSessions({
    env: {
      DATABASE_URL: process.env.DATABASE_URL!,
      REDIS_URL: process.env.REDIS_URL!,
      KEY_PREFIX: process.env.KEY_PREFIX!,
      INSTANCE_ID: 'bench-producer',
      LOG_LEVEL: 'silent',
      // Settings to compare (README): the archive's commit delay, the pool's idle timeout.
      ...Object.fromEntries(
        ['OUTPUT_COMMIT_DELAY_MS', 'OUTPUT_COMMIT_SIBLINGS', 'DATABASE_POOL_IDLE_MS'].flatMap((name) => (process.env[name] === undefined ? [] : [[name, process.env[name] as string]])),
      ),
    },
  });
  let ids: string[] = [];
  let runs: Array<{ sessionId: string; id: string }> = [];
  let open: (plan: Plan) => void = () => undefined;
  let emitted = 0;
  let failed = 0;
  let emitWaits: number[] = [];
  let late: number[] = [];
  process.on('message', (m: Message) => {
    void (async () => {
      if (m.cmd === 'prepare') {
        ids = [];
        emitted = 0;
        failed = 0;
        emitWaits = [];
        late = [];
        for (let i = 0; i < m.streams; i += 100) {
          const batch = await Promise.all(
            Array.from({ length: Math.min(100, m.streams - i) }, () => sessions.create({ title: 'token stream' })),
          );
          ids.push(...batch.map((s) => s.id));
        }
        // Started now and held at a gate until `go`, as the anchor's streams are created
        // before its clock starts: the step measures the token stream, not run start.
        const plan = new Promise<Plan>((resolve) => (open = resolve));
        runs = await Promise.all(
          ids.map((id, i) =>
            sessions.runs.start(id, async (run) => {
              const { rate, seconds, warmup, startAt } = await plan;
              const interval = 1000 / rate;
              const start = startAt + phase(i, ids.length, interval);
              const warm = Math.round(rate * warmup);
              const count = warm + Math.round(rate * seconds);
              for (let k = 0; k < count && !run.signal.aborted; k++) {
                const due = start + k * interval;
                await until(due);
                try {
                  const called = now();
                  late.push(called - due);
                  await run.emit({ type: 'text', data: k < warm ? { t: due, k, w: 1 } : { t: due, k } });
                  emitWaits.push(now() - called);
                  emitted++;
                } catch {
                  failed++;
                }
              }
            }),
          ),
        );
        send({ ids });
      } else if (m.cmd === 'go') {
        open({ rate: m.rate, seconds: m.seconds, warmup: m.warmup, startAt: now() + START_DELAY_MS });
        const ended = await Promise.all(runs.map((r) => sessions.runs.wait(r.sessionId, r.id)));
        // Runs that did not complete (their readers get an `error` event, the rest counts as lost).
        const notCompleted: Record<string, number> = {};
        for (const r of ended) {
          if (r.status !== 'completed') notCompleted[`${r.status}/${r.endReason ?? ''}`] = (notCompleted[`${r.status}/${r.endReason ?? ''}`] ?? 0) + 1;
        }
        send({ emitted, failed, notCompleted, emitP50Ms: quantileOf(emitWaits, 0.5), emitP99Ms: quantileOf(emitWaits, 0.99), lateP99Ms: quantileOf(late, 0.99) });
      } else {
        await sessions.close();
        process.exit(0);
      }
    })().catch((err: unknown) => {
      send({ error: String((err as Error).stack ?? err) });
    });
  });
  send({ ready: true });
}

async function resumableProducer(): Promise<void> {
  const { ctx, close } = await resumableContext();
  let gates: Array<{ id: string; open: (plan: Plan) => void; done: Promise<number> }> = [];
  let late: number[] = [];
  process.on('message', (m: Message) => {
    void (async () => {
      if (m.cmd === 'prepare') {
        gates = [];
        late = [];
        const token = `${process.pid}-${Date.now().toString(36)}`;
        for (let i = 0; i < m.streams; i++) {
          const id = `${token}-${i}`;
          let open!: (plan: Plan) => void;
          const plan = new Promise<Plan>((resolve) => (open = resolve));
          let finished!: (emitted: number) => void;
          const done = new Promise<number>((resolve) => (finished = resolve));
          const stream = await ctx.createNewResumableStream(id, () =>
            new ReadableStream<string>({
              async start(controller) {
                const { rate, seconds, warmup, startAt } = await plan;
                const start = startAt + phase(i, m.streams, 1000 / rate);
                const warm = Math.round(rate * warmup);
                const count = warm + Math.round(rate * seconds);
                for (let k = 0; k < count; k++) {
                  const due = start + k * (1000 / rate);
                  await until(due);
                  late.push(now() - due);
                  const data = k < warm ? { t: due, k, w: 1 } : { t: due, k };
                  controller.enqueue(`data: ${JSON.stringify({ type: 'text', data })}\n\n`);
                }
                controller.enqueue(`data: ${JSON.stringify({ type: 'done' })}\n\n`);
                controller.close();
                finished(count);
              },
            }),
          );
          // The original request's response: read and dropped.
          void (async () => {
            if (!stream) return;
            const reader = stream.getReader();
            while (!(await reader.read()).done) {
              /* drained */
            }
          })();
          gates.push({ id, open, done });
        }
        send({ ids: gates.map((g) => g.id) });
      } else if (m.cmd === 'go') {
        const startAt = now() + START_DELAY_MS;
        for (const g of gates) g.open({ rate: m.rate, seconds: m.seconds, warmup: m.warmup, startAt });
        const counts = await Promise.all(gates.map((g) => g.done));
        send({ emitted: counts.reduce((a, b) => a + b, 0), failed: 0, lateP99Ms: quantileOf(late, 0.99) });
      } else {
        await close();
        process.exit(0);
      }
    })().catch((err: unknown) => send({ error: String((err as Error).stack ?? err) }));
  });
  send({ ready: true });
}

async function resumableReader(): Promise<void> {
  const { ctx, close } = await resumableContext();
  const server = http.createServer((req, res) => {
    const id = /^\/s\/([^/?]+)/.exec(req.url ?? '')?.[1];
    if (!id) return void res.writeHead(404).end();
    void (async () => {
      const stream = await ctx.resumeExistingStream(decodeURIComponent(id));
      if (!stream) return void res.writeHead(422).end();
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      const reader = stream.getReader();
      req.once('close', () => void reader.cancel().catch(() => undefined));
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        if (!res.write(value)) await new Promise((resolve) => res.once('drain', resolve));
      }
      res.end();
    })().catch(() => res.destroy());
  });
  server.keepAliveTimeout = 0;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  process.on('message', (m: Message) => {
    if (m.cmd === 'close') {
      server.closeAllConnections();
      server.close();
      void close().then(() => process.exit(0));
    }
  });
  send({ ready: true, port: (server.address() as AddressInfo).port });
}

const roles = { 'agent-sessions': agentSessionsProducer, resumable: resumableProducer, 'resumable-reader': resumableReader };
await roles[role]();
