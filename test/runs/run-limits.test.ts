/**
 * The owner's run limits and usage (RunExecutor, issue 12) against a fake repository: RUN_MAX_MS
 * and RUN_IDLE_OUTPUT_MS end a run `failed` (run_max_ms / run_idle_output) even when its runner
 * ignores the signal, and the lease is no longer renewed after; an emitting run is not idle;
 * reported and returned usage reach the finalization summed.
 */
import { describe, expect, it } from 'vitest';
import { MemorySignalBus } from '../../src/adapters/memory/memory-signal-bus.js';
import { InProcessOutputLog } from '../../src/core/in-process-output-log.js';
import { RunExecutor } from '../../src/core/run-executor.js';
import type { FinalizeRequest, FinalizeResult, HeartbeatRow, OutputBatch, Run, RunRepository, Runner } from '../../src/core/runs.js';
import type { Session } from '../../src/core/types.js';
import { waitFor } from './support.js';

const OWNER = 'limits-owner';

function runOf(id: string, status: Run['status']): Run {
  return {
    id,
    sessionId: 's',
    tenantId: 'default',
    status,
    owner: OWNER,
    input: null,
    inputs: [null],
    notBefore: null,
    takesInput: false,
    error: null,
    endReason: null,
    interruptRequestedAt: null,
    leaseExpiresAt: null,
    createdAt: new Date().toISOString(),
    startedAt: null,
    endedAt: null,
    startSeq: 1,
    endSeq: null,
    persistOutput: false,
    agent: 'a',
    onOwnerLost: 'fail',
    maxRetries: 0,
    attempts: 0,
  };
}

/** Running until finalized; output is archived with increasing seqs. */
class FakeRepository {
  heartbeats: string[][] = [];
  finalized: FinalizeRequest[] = [];
  private seq = 1;

  async heartbeat(_owner: string, ids: readonly string[]): Promise<HeartbeatRow[]> {
    this.heartbeats.push([...ids]);
    return ids.map((id) => ({
      id,
      status: this.finalized.some((f) => f.runId === id) ? 'failed' : 'running',
      owner: OWNER,
      interruptRequested: false,
      interruptRequestedAt: null,
      inputSeq: 0,
      sessionEnded: false,
    }));
  }

  async get(_tenant: string, _session: string, id: string): Promise<Run | null> {
    return runOf(id, this.finalized.some((f) => f.runId === id) ? 'failed' : 'running');
  }

  async appendOutput(batches: readonly OutputBatch[]) {
    return batches.map((b) =>
      this.finalized.some((f) => f.runId === b.runId)
        ? null
        : b.events.map((e) => ({ seq: ++this.seq, runId: b.runId, type: e.type, data: e.data, createdAt: new Date().toISOString() })),
    );
  }

  async readInputs(): Promise<[]> {
    return [];
  }

  async finalize(req: FinalizeRequest): Promise<FinalizeResult> {
    this.finalized.push(req);
    return { run: { ...runOf(req.runId, req.status), endReason: req.reason }, session: null, events: [], promoted: null, cancelled: [] };
  }
}

function executorWith(repo: FakeRepository, limits: { runMaxMs?: number; runIdleOutputMs?: number }): RunExecutor {
  return new RunExecutor({
    repository: repo as unknown as RunRepository,
    bus: new MemorySignalBus(),
    live: new InProcessOutputLog(),
    instanceId: OWNER,
    leaseMs: 300,
    heartbeatMs: 20,
    maxEventBytes: 1_000,
    abortGraceMs: 150,
    loadSession: async () => ({ id: 's', status: 'active' }) as Session,
    onSessionWritten: async () => undefined,
    ...limits,
  });
}

/** Never returns and ignores its signal. */
const deaf: Runner = () => new Promise<void>(() => undefined);

async function execute(executor: RunExecutor, id: string, runner: Runner): Promise<void> {
  await executor.ready();
  await executor.adopt(runOf(id, 'running'), runner, { id: 's', status: 'active' } as Session);
}

describe('run limits', () => {
  it('ends a run at RUN_MAX_MS even when its runner ignores the signal, and stops renewing its lease', async () => {
    const repo = new FakeRepository();
    const executor = executorWith(repo, { runMaxMs: 100 });
    const started = Date.now();
    await execute(executor, 'max-1', deaf);
    await waitFor(() => repo.finalized.length === 1, 5_000, 'the run finalized');
    expect(repo.finalized[0]).toMatchObject({ runId: 'max-1', status: 'failed', reason: 'run_max_ms' });
    // The limit, then the abort grace: the runner never returned.
    expect(Date.now() - started).toBeGreaterThanOrEqual(100 + 150 - 20);
    await waitFor(() => executor.localRunCount === 0, 5_000, 'the run let go of');
    // Another run keeps the heartbeat beating: its renewals no longer name the ended run.
    const beats = repo.heartbeats.length;
    await execute(executor, 'max-2', deaf);
    await waitFor(() => repo.heartbeats.length > beats + 3, 5_000, 'later beats');
    expect(repo.heartbeats.slice(beats).flat()).toContain('max-2');
    expect(repo.heartbeats.slice(beats).flat()).not.toContain('max-1');
    await executor.close();
  });

  it('ends a silent run at RUN_IDLE_OUTPUT_MS; a run that keeps emitting is not idle', async () => {
    const repo = new FakeRepository();
    const executor = executorWith(repo, { runIdleOutputMs: 120 });
    let emitted = 0;
    // Talks every 30 ms for 20 events (longer than the idle limit), then goes silent and deaf.
    await execute(executor, 'idle-1', async (run) => {
      for (; emitted < 20; emitted++) {
        await run.emit({ type: 'text', data: { text: '.' } });
        await new Promise((r) => setTimeout(r, 30));
      }
      await deaf(run);
    });
    await waitFor(() => repo.finalized.length === 1, 5_000, 'the run finalized');
    expect(emitted).toBe(20);
    expect(repo.finalized[0]).toMatchObject({ runId: 'idle-1', status: 'failed', reason: 'run_idle_output' });
    await executor.close();
  });

  it('passes the usage reported and returned, summed, to the finalization', async () => {
    const repo = new FakeRepository();
    const executor = executorWith(repo, {});
    await execute(executor, 'usage-1', async (run) => {
      run.reportUsage({ input_tokens: 3, cost: 0.1 });
      run.reportUsage({ input_tokens: 2, output_tokens: 7 });
      return { usage: { output_tokens: 1, cost: 0.2 } };
    });
    await waitFor(() => repo.finalized.length === 1, 5_000, 'the run finalized');
    expect(repo.finalized[0]?.status).toBe('completed');
    const usage = repo.finalized[0]?.usage;
    expect(usage).toMatchObject({ input_tokens: 5, output_tokens: 8 });
    expect(usage?.cost).toBeCloseTo(0.3, 10);
    await executor.close();
  });
});
