/**
 * Token streams (SPEC §14): many runs on instance A emit small events at a steady pace; each
 * is read through SSE on instance B, a separate process, as a client behind a balancer would.
 * Side by side, on the same Redis with the same producers, schedule and readers, Vercel's
 * `resumable-stream` (which keeps nothing durable) is the anchor.
 *
 * For each system and load (streams × events/s each) it reports the sustained delivery rate,
 * emit → client latency p50/p99 (one clock: every event carries the time it was due, read on
 * the same machine), events lost or duplicated, events per PostgreSQL commit and Redis
 * commands per event. The load is raised until delivery falls behind or p99 passes 100 ms;
 * the highest load that held is each system's sustained rate.
 *
 * Limits it raises for itself on B: SSE_CONNECTIONS_PER_KEY (one key holds every stream) and
 * RATE_LIMIT_PER_MINUTE (off).
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { createClient } from 'redis';
import { cliArgs, ensureBuilt, fromSource } from './built.js';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const KEY = `bench-${randomUUID()}`;
const P99_BUDGET_MS = 100;
/** BENCH_STREAM_TRACE=1: also print p50/p99/max of each second of a step, by when the events were due. */
const TRACE = process.env.BENCH_STREAM_TRACE === '1';

function latencyTrace(readers: Reader[]): string {
  const start = Math.min(...readers.map((r) => r.dueAt[0] ?? Infinity));
  const seconds: number[][] = [];
  for (const r of readers) {
    r.dueAt.forEach((due, i) => (seconds[Math.floor((due - start) / 1000)] ??= []).push(r.latencies[i] as number));
  }
  return seconds
    .map((l, i) => {
      const sorted = Float64Array.from(l).sort();
      return `    second ${i}: ${l.length} events, p50 ${quantile(sorted, 0.5).toFixed(1)} ms, p99 ${quantile(sorted, 0.99).toFixed(1)} ms, max ${(sorted[sorted.length - 1] ?? 0).toFixed(1)} ms`;
    })
    .join('\n');
}
/** BENCH_CPU_PROF=<dir>: the workers and the server write CPU profiles there (node --cpu-prof). */
const PROFILE = process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : [];

export interface StreamStep {
  system: 'agent-sessions' | 'resumable-stream';
  streams: number;
  ratePerStream: number;
  seconds: number;
  /** Seconds streamed before the measured ones (delivered, checked for loss and duplicates, not timed). */
  warmupSeconds: number;
  offeredPerSec: number;
  deliveredPerSec: number;
  delivered: number;
  expected: number;
  lost: number;
  duplicated: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  eventsPerCommit: number | null;
  redisCommandsPerEvent: number;
  /**
   * CPU time the whole machine spent per delivered event while the step streamed (every
   * process: producers, server, readers, PostgreSQL, Redis; /proc/stat, so Linux only, else
   * null). Noise from other work on the machine counts too.
   */
  cpuMicrosPerEvent: number | null;
  /** How long a runner's awaited emit took (call → committed seq), p50/p99; agent-sessions only. */
  emitP50Ms: number | null;
  emitP99Ms: number | null;
  /** How late the producer's loop called emit (call − due), p99: the producing process's own stalls, both systems. */
  producerLateP99Ms: number | null;
  /** Emits the producer saw refused (the run had ended, or its output could not be archived). */
  emitFailed: number;
  /** Runs that did not end `completed`, by `<status>/<end reason>`. */
  notCompleted: Record<string, number>;
  held: boolean;
}

export interface TokenStreamReport {
  steps: StreamStep[];
  /** The highest offered rate (events/s) each system held with p99 ≤ 100 ms and nothing lost. */
  /** Per system that ran: the highest offered rate that held (0: none held). */
  sustained: Partial<Record<StreamStep['system'], number>>;
}

export interface TokenStreamOptions {
  databaseUrl: string;
  redisUrl: string;
  /** Stream counts to try, lowest first (default 100, 250, 500, 1000, 2000). */
  levels?: number[];
  ratePerStream?: number;
  seconds?: number;
  /** Seconds each step streams before the measured ones (default 2): delivered and checked, not timed. */
  warmupSeconds?: number;
  /** Run the sources through tsx instead of the build in dist/ (default: BENCH_SOURCE=1; bench/built.ts). */
  source?: boolean;
  /** Which systems to run (default both; BENCH_STREAM_SYSTEMS): one alone, to profile or trace it. */
  systems?: Array<StreamStep['system']>;
  log?: (line: string) => void;
}

/** The q-quantile of ascending `sorted`; NaN when empty. */
export function quantile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number;
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  server.close();
  return port;
}

/** A worker process (bench/token-streams-worker.ts) and a request/answer over its IPC channel. */
class Worker {
  private constructor(readonly child: ChildProcess) {}

  static async start(role: string, env: Record<string, string>): Promise<{ worker: Worker; ready: Record<string, unknown> }> {
    const child = fork(fileURLToPath(new URL('./token-streams-worker.ts', import.meta.url)), [], {
      cwd: ROOT,
      execArgv: [...PROFILE, '--import', 'tsx'],
      env: { ...process.env, ...env, BENCH_ROLE: role },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const worker = new Worker(child);
    return { worker, ready: await worker.answer() };
  }

  answer(): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const onExit = (code: number | null) => reject(new Error(`worker exited (${code})`));
      this.child.once('exit', onExit);
      this.child.once('message', (m: Record<string, unknown>) => {
        this.child.off('exit', onExit);
        if (typeof m.error === 'string') reject(new Error(m.error));
        else resolve(m);
      });
    });
  }

  request(message: Record<string, unknown>): Promise<Record<string, unknown>> {
    const answer = this.answer();
    this.child.send(message);
    return answer;
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = once(this.child, 'exit');
    this.child.send({ cmd: 'close' });
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }
}

/** agent-sessions instance B: the real CLI. */
async function startServer(env: Record<string, string>, source: boolean): Promise<{ url: string; stop(): Promise<void> }> {
  const port = await freePort();
  const child = spawn(process.execPath, [...PROFILE, ...cliArgs(source), 'serve', '--port', String(port)], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`agent-sessions serve exited (${child.exitCode})`);
    const ok = await fetch(`${url}/health`).then((r) => r.ok, () => false);
    if (ok) break;
    if (Date.now() > deadline) throw new Error('agent-sessions serve did not answer /health in 60 s');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    url,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

interface Reader {
  /** Due-to-received latencies of every `text` event (ms). */
  latencies: number[];
  /** When each of those was due (epoch ms), for BENCH_STREAM_TRACE. */
  dueAt: number[];
  seen: Set<number>;
  duplicated: number;
  firstAt: number;
  lastAt: number;
  ended: Promise<void>;
  close(): void;
}

/** One SSE reader: frames are split on blank lines, `data:` holds `{ type, data: { t, k } }`. */
function openReader(url: string, headers: Record<string, string>): Promise<Reader> {
  return new Promise((resolveOpen, rejectOpen) => {
    const reader: Reader = { latencies: [], dueAt: [], seen: new Set(), duplicated: 0, firstAt: 0, lastAt: 0, ended: Promise.resolve(), close: () => undefined };
    let finish!: () => void;
    reader.ended = new Promise((resolve) => (finish = resolve));
    const req = http.get(url, { headers: { accept: 'text/event-stream', ...headers }, agent: false }, (res) => {
      if (res.statusCode !== 200) {
        rejectOpen(new Error(`GET ${url}: ${res.statusCode}`));
        res.resume();
        return;
      }
      resolveOpen(reader);
      res.setEncoding('utf8');
      let buffer = '';
      res.on('data', (chunk: string) => {
        const received = performance.timeOrigin + performance.now();
        buffer += chunk;
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const frame = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const line = frame.split('\n').find((l) => l.startsWith('data:'));
          if (!line) continue;
          const event = JSON.parse(line.slice(5)) as { type: string; data?: { t?: number; k?: number; w?: number } };
          if (event.type === 'text' && typeof event.data?.t === 'number') {
            const k = event.data.k as number;
            if (reader.seen.has(k)) reader.duplicated++;
            reader.seen.add(k);
            // Warm-up events count for loss and duplicates, not for latency or the rate.
            if (event.data.w) continue;
            reader.latencies.push(received - event.data.t);
            reader.dueAt.push(event.data.t);
            if (reader.firstAt === 0) reader.firstAt = received;
            reader.lastAt = received;
          } else if (event.type === 'done' || event.type === 'error') {
            req.destroy();
            finish();
          }
        }
      });
      res.once('close', finish);
    });
    req.once('error', (err) => {
      rejectOpen(err);
      finish();
    });
    reader.close = () => req.destroy();
  });
}

async function pgCommits(client: pg.Client, db: string): Promise<number> {
  await client.query('SELECT pg_stat_clear_snapshot()');
  const { rows } = await client.query<{ n: string }>('SELECT xact_commit::text AS n FROM pg_stat_database WHERE datname = $1', [db]);
  return Number(rows[0]?.n ?? 0);
}

/** Busy CPU time of the whole machine so far (µs), from /proc/stat; null where there is none. */
function machineCpuMicros(): number | null {
  let stat: string;
  try {
    stat = readFileSync('/proc/stat', 'utf8');
  } catch {
    return null;
  }
  // cpu  user nice system idle iowait irq softirq steal …, in clock ticks (USER_HZ, 100 on Linux).
  const fields = (/^cpu\s+(.*)$/m.exec(stat)?.[1] ?? '').split(/\s+/).map(Number);
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = fields;
  return (user + nice + system + irq + softirq + steal) * 10_000;
}

async function redisCommands(redis: ReturnType<typeof createClient>): Promise<number> {
  const info = await redis.info('stats');
  return Number(/total_commands_processed:(\d+)/.exec(info)?.[1] ?? 0);
}

export async function runTokenStreamBench(options: TokenStreamOptions): Promise<TokenStreamReport> {
  const levels = options.levels ?? [100, 250, 500, 1000, 2000];
  const rate = options.ratePerStream ?? 50;
  const seconds = options.seconds ?? 20;
  const warmup = options.warmupSeconds ?? 2;
  const log = options.log ?? (() => undefined);
  const source = options.source ?? fromSource();
  const known: ReadonlyArray<StreamStep['system']> = ['agent-sessions', 'resumable-stream'];
  const unknown = (options.systems ?? []).filter((x) => !known.includes(x));
  if (unknown.length > 0 || options.systems?.length === 0) {
    throw new Error(`token-stream systems: ${JSON.stringify(options.systems)}; each must be one of ${known.join(', ')}`);
  }
  // Built before any process starts, so the workers and the server find it ready.
  ensureBuilt(source);
  const token = `${Date.now().toString(36)}${randomUUID().slice(0, 8)}`;
  const dbName = `as_bench_streams_${token}`;
  const admin = new pg.Client({ connectionString: options.databaseUrl });
  admin.on('error', () => undefined);
  await admin.connect();
  await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(dbName)}`);
  const url = new URL(options.databaseUrl);
  url.pathname = `/${dbName}`;
  const prefix = `as_bench_streams:${token}:`;
  const redis = createClient({ url: options.redisUrl });
  await redis.connect();
  const env = {
    DATABASE_URL: url.toString(),
    REDIS_URL: options.redisUrl,
    KEY_PREFIX: prefix,
    BENCH_KEY_PREFIX: `${prefix}rs`,
    BENCH_SOURCE: source ? '1' : '0',
    BENCH_BUILT: '1',
  };
  const steps: StreamStep[] = [];
  const closers: Array<() => Promise<void>> = [];
  try {
    // Each system's processes run only during its own steps: an idle worker's memory-reducing
    // GC (V8 runs one once a process goes quiet, 150 ms of parallel marking) would otherwise
    // take cores from the system being measured.
    const systems = [
      {
        system: 'agent-sessions' as const,
        // A is the library in a worker, B the real server.
        start: async () => {
          const server = await startServer({
            ...env,
            ADMIN_API_KEY: KEY,
            INSTANCE_ID: 'bench-reader',
            LOG_LEVEL: 'warn',
            SSE_CONNECTIONS_PER_KEY: '100000',
            RATE_LIMIT_PER_MINUTE: '0',
          }, source);
          closers.push(() => server.stop());
          const producer = (await Worker.start('agent-sessions', env)).worker;
          closers.push(() => producer.close());
          return {
            producer,
            stream: (id: string) => `${server.url}/v1/sessions/${id}/stream`,
            headers: { authorization: `Bearer ${KEY}` } as Record<string, string>,
          };
        },
      },
      {
        system: 'resumable-stream' as const,
        // A a worker with the producers, B a worker serving resumeExistingStream.
        start: async () => {
          const producer = (await Worker.start('resumable', env)).worker;
          closers.push(() => producer.close());
          const reader = await Worker.start('resumable-reader', env);
          closers.push(() => reader.worker.close());
          const url = `http://127.0.0.1:${reader.ready.port as number}`;
          return { producer, stream: (id: string) => `${url}/s/${encodeURIComponent(id)}`, headers: {} as Record<string, string> };
        },
      },
    ];
    for (const system of systems.filter((x) => options.systems?.includes(x.system) ?? true)) {
      const opened = closers.length;
      const s = { system: system.system, ...(await system.start()) };
      for (const streams of levels) {
        const { ids } = (await s.producer.request({ cmd: 'prepare', streams })) as { ids: string[] };
        const readers: Reader[] = [];
        for (let i = 0; i < ids.length; i += 50) {
          readers.push(...(await Promise.all(ids.slice(i, i + 50).map((id) => openReader(s.stream(id), s.headers)))));
        }
        const commitsBefore = await pgCommits(admin, dbName);
        const redisBefore = await redisCommands(redis);
        const cpuBefore = machineCpuMicros();
        const produced = s.producer.request({ cmd: 'go', rate, seconds, warmup });
        const deadline = setTimeout(() => readers.forEach((r) => r.close()), (warmup + seconds + 60) * 1000);
        const producedReport = await produced;
        await Promise.all(readers.map((r) => r.ended));
        const cpuAfter = machineCpuMicros();
        clearTimeout(deadline);
        // The statistics collector publishes a backend's counts when it goes idle (≤ 1 s).
        await new Promise((resolve) => setTimeout(resolve, 1_500));
        const commits = (await pgCommits(admin, dbName)) - commitsBefore;
        const redisUsed = (await redisCommands(redis)) - redisBefore;

        const all = Float64Array.from(readers.flatMap((r) => r.latencies)).sort();
        const expected = streams * (Math.round(rate * warmup) + Math.round(rate * seconds));
        const delivered = readers.reduce((n, r) => n + r.seen.size, 0);
        const duplicated = readers.reduce((n, r) => n + r.duplicated, 0);
        const first = Math.min(...readers.map((r) => r.firstAt || Infinity));
        const last = Math.max(...readers.map((r) => r.lastAt));
        const step: StreamStep = {
          system: s.system,
          streams,
          ratePerStream: rate,
          seconds,
          warmupSeconds: warmup,
          offeredPerSec: streams * rate,
          deliveredPerSec: all.length / ((last - first) / 1000 || 1),
          delivered,
          expected,
          lost: expected - delivered,
          duplicated,
          p50Ms: quantile(all, 0.5),
          p99Ms: quantile(all, 0.99),
          maxMs: all.length ? (all[all.length - 1] as number) : Number.NaN,
          eventsPerCommit: s.system === 'agent-sessions' && commits > 0 ? delivered / commits : null,
          redisCommandsPerEvent: delivered > 0 ? redisUsed / delivered : Number.NaN,
          cpuMicrosPerEvent: cpuBefore !== null && cpuAfter !== null && delivered > 0 ? (cpuAfter - cpuBefore) / delivered : null,
          emitP50Ms: typeof producedReport.emitP50Ms === 'number' ? producedReport.emitP50Ms : null,
          emitP99Ms: typeof producedReport.emitP99Ms === 'number' ? producedReport.emitP99Ms : null,
          producerLateP99Ms: typeof producedReport.lateP99Ms === 'number' ? producedReport.lateP99Ms : null,
          emitFailed: typeof producedReport.failed === 'number' ? producedReport.failed : 0,
          notCompleted: (producedReport.notCompleted as Record<string, number> | undefined) ?? {},
          held: false,
        };
        step.held = step.lost === 0 && step.duplicated === 0 && step.p99Ms <= P99_BUDGET_MS && step.deliveredPerSec >= 0.95 * step.offeredPerSec;
        steps.push(step);
        if (TRACE) log(latencyTrace(readers));
        log(
          `  ${s.system} ${streams} streams × ${rate}/s: ${Math.round(step.deliveredPerSec)} events/s delivered ` +
            `(offered ${step.offeredPerSec}), p50 ${step.p50Ms.toFixed(1)} ms, p99 ${step.p99Ms.toFixed(1)} ms, ` +
            `lost ${step.lost}${step.emitFailed > 0 ? ` (${step.emitFailed} emits refused)` : ''}, duplicated ${duplicated}, ` +
            `${Object.keys(step.notCompleted).length > 0 ? `runs not completed ${JSON.stringify(step.notCompleted)}, ` : ''}` +
            `${step.eventsPerCommit === null ? '' : `${step.eventsPerCommit.toFixed(2)} events/commit, `}` +
            `${step.redisCommandsPerEvent.toFixed(2)} Redis commands/event` +
            `${step.cpuMicrosPerEvent === null ? '' : `, machine CPU ${Math.round(step.cpuMicrosPerEvent)} µs/event`}` +
            `${step.emitP99Ms === null ? '' : `, emit p50 ${step.emitP50Ms?.toFixed(1)} ms p99 ${step.emitP99Ms.toFixed(1)} ms`}` +
            `${step.producerLateP99Ms === null ? '' : `, producer late p99 ${step.producerLateP99Ms.toFixed(1)} ms`}` +
            `${step.held ? '' : ' — did not hold'}`,
        );
        if (!step.held) break;
      }
      for (const close of closers.splice(opened).reverse()) await close().catch(() => undefined);
    }
  } finally {
    for (const close of closers.reverse()) await close().catch(() => undefined);
    for await (const keys of redis.scanIterator({ MATCH: `${prefix}*`, COUNT: 1000 })) {
      if (keys.length) await redis.del(keys);
    }
    await redis.quit().catch(() => undefined);
    await admin.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(dbName)} WITH (FORCE)`).catch(() => undefined);
    await admin.end().catch(() => undefined);
  }
  const sustained: TokenStreamReport['sustained'] = {};
  for (const step of steps) sustained[step.system] = Math.max(sustained[step.system] ?? 0, step.held ? step.offeredPerSec : 0);
  return { steps, sustained };
}

export function formatTokenStreamTable(report: TokenStreamReport): string {
  const rows = [
    ['system', 'streams × rate', 'delivered/s', 'p50 ms', 'p99 ms', 'lost', 'dup', 'events/commit', 'Redis cmds/event', 'CPU µs/event', 'held'],
    ...report.steps.map((s) => [
      s.system,
      `${s.streams} × ${s.ratePerStream}/s`,
      String(Math.round(s.deliveredPerSec)),
      s.p50Ms.toFixed(1),
      s.p99Ms.toFixed(1),
      String(s.lost),
      String(s.duplicated),
      s.eventsPerCommit === null ? '—' : s.eventsPerCommit.toFixed(2),
      s.redisCommandsPerEvent.toFixed(2),
      s.cpuMicrosPerEvent === null ? '—' : String(Math.round(s.cpuMicrosPerEvent)),
      s.held ? 'yes' : 'no',
    ]),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const lines = rows.map((r) => `| ${r.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`);
  lines.splice(1, 0, `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  const ours = report.sustained['agent-sessions'];
  const anchor = report.sustained['resumable-stream'];
  const figures = [
    ...(ours === undefined ? [] : [`agent-sessions ${ours} events/s`]),
    ...(anchor === undefined ? [] : [`resumable-stream ${anchor} events/s`]),
  ].join(', ');
  const ratio = ours !== undefined && anchor !== undefined && anchor > 0 ? ` (${(ours / anchor).toFixed(2)}×)` : '';
  lines.push('', `sustained with p99 ≤ ${P99_BUDGET_MS} ms and nothing lost: ${figures}${ratio}`);
  return lines.join('\n');
}
