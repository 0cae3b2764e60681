/**
 * The owner's side of runs with a fake repository (no database): the lease keeper's renewals
 * and what the executor does with their reports (the durable path of every signal).
 */
import { describe, expect, it } from 'vitest';
import { MemorySignalBus } from '../../src/adapters/memory/memory-signal-bus.js';
import { InProcessOutputLog } from '../../src/core/in-process-output-log.js';
import { LeaseKeeper } from '../../src/core/lease-keeper.js';
import { RunExecutor } from '../../src/core/run-executor.js';
import type { FinalizeRequest, FinalizeResult, HeartbeatRow, Run, RunContext, RunRepository } from '../../src/core/runs.js';
import type { Session } from '../../src/core/types.js';
import { waitFor } from './support.js';

const OWNER = 'me';

function row(id: string, fields: Partial<HeartbeatRow> = {}): HeartbeatRow {
  return { id, status: 'running', owner: OWNER, interruptRequested: false, interruptRequestedAt: null, inputSeq: 0, sessionEnded: false, ...fields };
}

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
    startSeq: null,
    endSeq: null,
    persistOutput: false,
    agent: null,
    onOwnerLost: 'fail',
    maxRetries: 0,
    attempts: 0,
  };
}

/** A repository that answers from what the test sets, and records what it was asked. */
class FakeRepository {
  heartbeats: string[][] = [];
  heartbeatRows: (ids: readonly string[]) => HeartbeatRow[] = (ids) => ids.map((id) => row(id));
  heartbeatFails = false;
  statuses = new Map<string, Run['status']>();
  finalized: FinalizeRequest[] = [];

  async heartbeat(owner: string, ids: readonly string[]): Promise<HeartbeatRow[]> {
    expect(owner).toBe(OWNER);
    this.heartbeats.push([...ids]);
    if (this.heartbeatFails) throw new Error('database down');
    return this.heartbeatRows(ids);
  }

  async get(_tenant: string, _session: string, id: string): Promise<Run | null> {
    const status = this.statuses.get(id);
    return status ? runOf(id, status) : null;
  }

  async appendOutput(batches: readonly unknown[]): Promise<null[]> {
    return batches.map(() => null);
  }

  async readInputs(): Promise<[]> {
    return [];
  }

  async finalize(req: FinalizeRequest): Promise<FinalizeResult> {
    this.finalized.push(req);
    this.statuses.set(req.runId, req.status);
    return { run: { ...runOf(req.runId, req.status), endReason: req.reason }, session: null, events: [], promoted: null, cancelled: [] };
  }
}

function executorWith(repo: FakeRepository, heartbeatMs = 20): RunExecutor {
  return new RunExecutor({
    repository: repo as unknown as RunRepository,
    bus: new MemorySignalBus(),
    live: new InProcessOutputLog(),
    instanceId: OWNER,
    leaseMs: 1_000,
    heartbeatMs,
    maxEventBytes: 1_000,
    abortGraceMs: 200,
    loadSession: async () => ({ id: 's', status: 'active' }) as Session,
    onSessionWritten: async () => undefined,
  });
}

/** A runner that waits for its signal, reporting whether and why it fired. */
function untilAborted(seen: { reason?: unknown }) {
  return (run: RunContext) =>
    new Promise<void>((resolve) => {
      run.signal.addEventListener(
        'abort',
        () => {
          seen.reason = run.signal.reason;
          resolve();
        },
        { once: true },
      );
    });
}

describe('LeaseKeeper', () => {
  it('renews what is held at every beat, shares a renewal in flight, skips beats with nothing held, and survives failures', async () => {
    const repo = new FakeRepository();
    let held: string[] = [];
    const reports: Array<{ ids: readonly string[]; rows: readonly HeartbeatRow[] }> = [];
    const errors: unknown[] = [];
    const keeper = new LeaseKeeper({
      repository: repo,
      owner: OWNER,
      leaseMs: 1_000,
      intervalMs: 10,
      held: () => held,
      report: (ids, rows) => reports.push({ ids, rows }),
      onError: (err) => errors.push(err),
    });
    keeper.start();
    keeper.start();
    await keeper.renew();
    expect(repo.heartbeats).toEqual([]);
    held = ['r1', 'r2'];
    await waitFor(() => reports.length >= 2, 5_000, 'two renewals');
    expect(reports[0]).toEqual({ ids: ['r1', 'r2'], rows: [row('r1'), row('r2')] });
    expect(keeper.renew()).toBe(keeper.renew());
    repo.heartbeatFails = true;
    await waitFor(() => errors.length > 0, 5_000, 'a failed renewal reported');
    repo.heartbeatFails = false;
    const after = reports.length;
    await waitFor(() => reports.length > after, 5_000, 'renewals to go on after a failure');
    await keeper.stop();
    const stopped = repo.heartbeats.length;
    await new Promise((r) => setTimeout(r, 50));
    expect(repo.heartbeats.length).toBe(stopped);
  });
});

describe('RunExecutor and its lease reports', () => {
  it('ignores a report that still reads a promoted run as queued, and aborts on one that says the run is gone', async () => {
    const repo = new FakeRepository();
    const executor = executorWith(repo);
    await executor.ready();
    try {
      const seen: { reason?: unknown } = {};
      executor.register({ id: 'q1', sessionId: 's', tenant: 'default', input: null, runner: untilAborted(seen) });
      executor.recorded(runOf('q1', 'queued'), null);
      // Promoted: the signal makes the executor read the row and launch the run.
      repo.statuses.set('q1', 'running');
      // The renewals keep reading it as queued (a renewal that began before the promotion committed).
      repo.heartbeatRows = (ids) => ids.map((id) => row(id, { status: 'queued' }));
      await executor.deliver(OWNER, { type: 'promoted', sessionId: 's', runId: 'q1' });
      await waitFor(() => executor.localRunCounts().running === 1, 5_000, 'the promoted run to launch');
      const beats = repo.heartbeats.length;
      await waitFor(() => repo.heartbeats.length >= beats + 3, 5_000, 'three renewals');
      expect(seen.reason).toBeUndefined();
      // A report that the run ended elsewhere (swept as an orphan): the owner stops it.
      repo.heartbeatRows = (ids) => ids.map((id) => row(id, { status: 'failed' }));
      await waitFor(() => seen.reason !== undefined, 5_000, 'the run aborted');
      expect(seen.reason).toMatchObject({ code: 'run_ended', details: { reason: 'owner_lost' } });
      // A lost run is not finalized by the instance that lost it.
      await waitFor(() => executor.localRunCount === 0, 5_000, 'the run forgotten');
      expect(repo.finalized).toEqual([]);
    } finally {
      await executor.close();
    }
  });

  it('delivers an interrupt and a session end through the reports alone', async () => {
    const repo = new FakeRepository();
    const executor = executorWith(repo);
    await executor.ready();
    try {
      const interrupted: { reason?: unknown } = {};
      const ended: { reason?: unknown } = {};
      for (const [id, seen] of [['r1', interrupted], ['r2', ended]] as const) {
        executor.register({ id, sessionId: 's', tenant: 'default', input: null, runner: untilAborted(seen) });
        executor.recorded(runOf(id, 'running'), { id: 's', status: 'active' } as Session);
      }
      repo.heartbeatRows = (ids) =>
        ids.map((id) => row(id, id === 'r1' ? { interruptRequested: true, interruptRequestedAt: Date.now() } : { sessionEnded: true }));
      await waitFor(() => repo.finalized.length === 2, 5_000, 'both runs finalized');
      expect(interrupted.reason).toMatchObject({ code: 'interrupted' });
      const byRun = Object.fromEntries(repo.finalized.map((f) => [f.runId, f]));
      expect(byRun.r1).toMatchObject({ status: 'interrupted', reason: 'interrupted', details: { interrupt: { via: 'heartbeat' } } });
      expect(byRun.r2).toMatchObject({ status: 'interrupted', reason: 'session_ended' });
    } finally {
      await executor.close();
    }
  });

  it('close() ends a queued run as owner_shutdown and refuses new runs', async () => {
    const repo = new FakeRepository();
    const executor = executorWith(repo, 60_000);
    await executor.ready();
    executor.register({ id: 'q1', sessionId: 's', tenant: 'default', input: null, runner: async () => undefined });
    executor.recorded(runOf('q1', 'queued'), null);
    expect(executor.localRunCounts()).toEqual({ running: 0, queued: 1 });
    await executor.close();
    expect(executor.accepting).toBe(false);
    expect(repo.finalized).toMatchObject([{ runId: 'q1', owner: OWNER, status: 'failed', reason: 'owner_shutdown' }]);
    expect(executor.localRunCount).toBe(0);
  });
});
