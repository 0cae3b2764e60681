/**
 * `npm run bench`: the session operations side by side with raw baselines on the same
 * connections, at equal concurrency, in one run (SPEC §14). Prints a table and writes the
 * same as JSON to bench/results/. The benchmark itself is src/cli/bench.ts, which
 * `agent-sessions bench` runs too.
 *
 *   DATABASE_URL  PostgreSQL server to create a throwaway database on (default local)
 *   REDIS_URL     Redis (default redis://127.0.0.1:6379); keys go under a unique prefix
 *   BENCH_CONCURRENCY (default 32), BENCH_SECONDS per operation (default 2),
 *   BENCH_INTERRUPTS runs interrupted for the interrupt latency (default 50)
 */
import path from 'node:path';
import { formatBenchTable, runBench, writeBenchReport } from '../src/cli/bench.js';

const report = await runBench({
  databaseUrl: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
  redisUrl: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
  concurrency: Number(process.env.BENCH_CONCURRENCY ?? 32),
  secondsPerOperation: Number(process.env.BENCH_SECONDS ?? 2),
  interrupts: Number(process.env.BENCH_INTERRUPTS ?? 50),
  log: (line) => process.stdout.write(`${line}\n`),
});
process.stdout.write(`\n${formatBenchTable(report.results)}\n`);
const file = writeBenchReport(report);
process.stdout.write(`\nwritten to ${path.relative(process.cwd(), file)}\n`);
