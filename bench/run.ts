/**
 * `npm run bench`: the session operations side by side with raw baselines on the same
 * connections, at equal concurrency, in one run (SPEC §14), then the token-stream group
 * (bench/token-streams.ts) beside Vercel's resumable-stream. Prints the tables and writes
 * them as JSON to bench/results/. The operations benchmark is src/cli/bench.ts, which
 * `agent-sessions bench` runs too.
 *
 *   DATABASE_URL  PostgreSQL server to create throwaway databases on (default local)
 *   REDIS_URL     Redis (default redis://127.0.0.1:6379); keys go under a unique prefix
 *   BENCH_CONCURRENCY (default 32), BENCH_SECONDS per operation (default 2),
 *   BENCH_INTERRUPTS runs interrupted for the interrupt latency (default 50),
 *   BENCH_DB_POOL PostgreSQL pool size of each instance opened (default 16: the bench opens
 *   five at once, 80 connections, under PostgreSQL's default max_connections of 100; lower
 *   it on a server whose connections others share)
 *   BENCH_STREAMS=0 skips the token streams; BENCH_STREAM_LEVELS stream counts to try
 *   (default 100,250,500,1000,2000), BENCH_STREAM_RATE events/s per stream (default 50),
 *   BENCH_STREAM_SECONDS per load (default 20), BENCH_STREAM_SYSTEMS one of agent-sessions,
 *   resumable-stream alone (default both); BENCH_CPU_PROF=<dir> writes CPU profiles of
 *   the token-stream workers and server there
 *   BENCH_SOURCE=1 runs the sources through tsx instead of the build in dist/ (bench/built.ts)
 */
import path from 'node:path';
import { load } from './built.js';
import { formatTokenStreamTable, runTokenStreamBench, type TokenStreamOptions, type TokenStreamReport } from './token-streams.js';

// The compiled package (bench/built.ts), not the sources through tsx.
const { formatBenchTable, runBench, writeBenchReport } = await load<typeof import('../src/cli/bench.js')>('cli/bench');

const databaseUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const log = (line: string) => process.stdout.write(`${line}\n`);

const report = await runBench({
  databaseUrl,
  redisUrl,
  concurrency: Number(process.env.BENCH_CONCURRENCY ?? 32),
  secondsPerOperation: Number(process.env.BENCH_SECONDS ?? 2),
  interrupts: Number(process.env.BENCH_INTERRUPTS ?? 50),
  databasePoolMax: Number(process.env.BENCH_DB_POOL ?? 16),
  log,
});
process.stdout.write(`\n${formatBenchTable(report.results)}\n`);

let tokenStreams: TokenStreamReport | undefined;
if (process.env.BENCH_STREAMS !== '0') {
  log('\ntoken streams (instance A emits, instance B serves SSE; resumable-stream on the same Redis):');
  tokenStreams = await runTokenStreamBench({
    databaseUrl,
    redisUrl,
    levels: process.env.BENCH_STREAM_LEVELS?.split(',').map(Number),
    ratePerStream: process.env.BENCH_STREAM_RATE ? Number(process.env.BENCH_STREAM_RATE) : undefined,
    seconds: process.env.BENCH_STREAM_SECONDS ? Number(process.env.BENCH_STREAM_SECONDS) : undefined,
    warmupSeconds: process.env.BENCH_STREAM_WARMUP ? Number(process.env.BENCH_STREAM_WARMUP) : undefined,
    systems: process.env.BENCH_STREAM_SYSTEMS?.split(',').map((x) => x.trim()) as TokenStreamOptions['systems'],
    log,
  });
  process.stdout.write(`\n${formatTokenStreamTable(tokenStreams)}\n`);
}
const full = { ...report, tokenStreams };
const file = writeBenchReport(full);
process.stdout.write(`\nwritten to ${path.relative(process.cwd(), file)}\n`);
