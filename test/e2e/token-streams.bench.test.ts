/**
 * The token-stream benchmark (bench/token-streams.ts) at a tiny load, so it cannot rot: both
 * systems deliver every event exactly once from the producing process to SSE readers on
 * another process, and the report carries every figure the docs quote.
 */
import { describe, expect, it } from 'vitest';
import { formatTokenStreamTable, runTokenStreamBench } from '../../bench/token-streams.js';
import { requireServices, serviceUrl } from '../setup/harness.js';

const suite = 'e2e/token-streams-bench';
const ready = requireServices(['postgres', 'redis'], suite);

describe.skipIf(!ready)(suite, () => {
  it('streams every event once through both systems and reports the figures', { timeout: 180_000 }, async () => {
    const report = await runTokenStreamBench({
      databaseUrl: serviceUrl('postgres'),
      redisUrl: serviceUrl('redis'),
      levels: [5],
      ratePerStream: 10,
      seconds: 1,
      warmupSeconds: 1,
      // The sources, as every test runs them (the bench itself runs dist/).
      source: true,
    });
    expect(report.steps.map((s) => s.system)).toEqual(['agent-sessions', 'resumable-stream']);
    for (const step of report.steps) {
      // A second of warm-up and a measured second: every event of both arrives, once.
      expect(step, step.system).toMatchObject({ streams: 5, warmupSeconds: 1, expected: 100, delivered: 100, lost: 0, duplicated: 0 });
      expect(step.p99Ms).toBeGreaterThanOrEqual(step.p50Ms);
      expect(step.redisCommandsPerEvent).toBeGreaterThan(0);
      // Both producers report how late their loops called emit; Linux has /proc/stat for the CPU.
      expect(step.producerLateP99Ms, step.system).toBeGreaterThanOrEqual(0);
      if (process.platform === 'linux') expect(step.cpuMicrosPerEvent, step.system).toBeGreaterThan(0);
    }
    expect(report.steps[0]?.eventsPerCommit).toBeGreaterThan(0);
    expect(formatTokenStreamTable(report)).toMatch(/sustained with p99/);
  });
});
