/**
 * The orphan sweep (SPEC §7, §9): finalizes runs whose owner stopped renewing the lease as
 * `failed`/`owner_lost`, so their readers get the terminal event, their session is repaired
 * and what was queued behind them starts. A run whose policy is `retry` (with restarts left)
 * is handed back to the queue instead, for a worker of its agent to claim again. Safe on every instance at once: the repository
 * claims each session with SKIP LOCKED and checks the lease again under lock.
 */
import type { RunLogger } from './run-executor.js';
import type { FinalizeResult, RunRepository } from './runs.js';
import { NO_RUN_TELEMETRY, type RunTelemetry } from './telemetry.js';

export interface OrphanSweepOptions {
  repository: Pick<RunRepository, 'orphans' | 'finalize'>;
  /** The lease a queued run gets when it starts behind an orphan. */
  leaseMs: number;
  /** Tells caches, readers and owners what a finalization changed (the executor's `announce`). */
  announce: (result: FinalizeResult) => Promise<void>;
  telemetry?: RunTelemetry;
  logger?: RunLogger;
}

/** One pass: ends up to `limit` orphaned runs, stopping early when `signal` fires. Resolves to the runs it ended. */
export async function finalizeOrphanedRuns(o: OrphanSweepOptions, limit = 50, signal?: AbortSignal): Promise<number> {
  const telemetry = o.telemetry ?? NO_RUN_TELEMETRY;
  const candidates = await o.repository.orphans(limit);
  let ended = 0;
  for (const c of candidates) {
    if (signal?.aborted) break;
    const result = await o.repository.finalize({
      tenant: c.tenant,
      sessionId: c.sessionId,
      runId: c.id,
      owner: null,
      status: 'failed',
      reason: 'owner_lost',
      error: 'the instance running this run stopped renewing its lease',
      sessionStatus: 'idle',
      leaseMs: o.leaseMs,
      ownerLost: true,
    });
    if (!result) continue;
    ended++;
    if (result.run.status === 'queued') {
      telemetry.runEnded('failed', 'handed_back');
      o.logger?.warn({ run_id: c.id, session_id: c.sessionId, attempts: result.run.attempts }, 'orphaned run handed back for a restart');
    } else {
      telemetry.runEnded('failed', 'owner_lost');
      o.logger?.warn({ run_id: c.id, session_id: c.sessionId, owner: result.run.owner }, 'orphaned run finalized');
    }
    await o.announce(result);
  }
  return ended;
}
