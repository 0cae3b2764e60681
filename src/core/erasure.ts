/**
 * Erasure (SPEC §18): deletes everything of one user of a tenant, or of a whole tenant —
 * sessions with their items, runs, run inputs and output, the events that name them, the
 * tenant's API keys and stored idempotent answers (tenant erasure), and every cached copy: near caches of all instances
 * and the shared tier hear the same tombstone a purge announces, and the live output log
 * drops its streams.
 *
 * Batched: each batch of `batchSize` sessions is one transaction, so erasing a tenant of a
 * million sessions never holds one giant transaction or lock set; a failure part-way leaves
 * whole batches erased and the call can simply be repeated. Sessions with a run queued or
 * running are refused (409 session_busy) before anything of them is deleted: interrupt
 * the runs first (the erasure of a live conversation should be a deliberate step).
 */
import { throwIfAborted } from './abort.js';
import type { ApiKeyService } from './api-keys.js';
import { AgentSessionsError, RunError, ValidationError } from './errors.js';
import { sessionKey } from './ids.js';
import type { SessionRepository } from './ports.js';
import type { OutputLog } from './runs.js';
import { TENANT_RE } from './types.js';

/** Rows deleted by one erasure (the HTTP answer's body, in camelCase). */
export interface ErasureResult {
  sessions: number;
  items: number;
  runs: number;
  outputEvents: number;
  outbox: number;
  keys: number;
}

export interface ErasureOptions {
  repository: SessionRepository;
  apiKeys: Pick<ApiKeyService, 'deleteTenant'>;
  /** Drops a deleted session from every cache tier and its lease counter (SessionService.evictDeleted). */
  evict: (tenant: string, id: string) => Promise<void>;
  output: Pick<OutputLog, 'discard'>;
  /** Stored idempotent answers: those naming an erased session go with it, all of a tenant with the tenant. */
  idempotencyKeys?: { deleteTenant(tenant: string): Promise<number>; deleteNaming(tenant: string, sessionIds: readonly string[]): Promise<number> };
  /** Sessions per transaction (default 500). */
  batchSize?: number;
}

/** Far above any text limit a session's user id was written under; only a sanity bound. */
const USER_ID_MAX = 65_536;

export class Erasure {
  private readonly batchSize: number;

  constructor(private readonly options: ErasureOptions) {
    this.batchSize = options.batchSize ?? 500;
  }

  /** Erases every session of `userId` in `tenant`. Erasing a user with nothing left is not an error. */
  async eraseUser(tenant: string, userId: string, opts: { signal?: AbortSignal } = {}): Promise<ErasureResult> {
    checkTenant(tenant);
    if (typeof userId !== 'string' || userId.length === 0 || userId.length > USER_ID_MAX) {
      throw new ValidationError(`user id must be 1 to ${USER_ID_MAX} characters`, { field: 'user_id' });
    }
    return this.erase(tenant, userId, opts.signal);
  }

  /** Erases a whole tenant, its API keys included; `tenant_not_found` when nothing names it. */
  async eraseTenant(tenant: string, opts: { signal?: AbortSignal } = {}): Promise<ErasureResult> {
    checkTenant(tenant);
    const result = await this.erase(tenant, null, opts.signal);
    // Keys last: a refusal (runs in progress) leaves the tenant able to interrupt its runs.
    result.keys = await this.options.apiKeys.deleteTenant(tenant);
    // Stored answers name the tenant's sessions and runs: they go too (not counted in the result).
    const answers = (await this.options.idempotencyKeys?.deleteTenant(tenant)) ?? 0;
    if (result.sessions === 0 && result.outbox === 0 && result.keys === 0 && answers === 0) {
      throw new AgentSessionsError('tenant_not_found', `tenant ${tenant} not found`, { details: { tenant } });
    }
    return result;
  }

  private async erase(tenant: string, userId: string | null, signal: AbortSignal | undefined): Promise<ErasureResult> {
    const total: ErasureResult = { sessions: 0, items: 0, runs: 0, outputEvents: 0, outbox: 0, keys: 0 };
    throwIfAborted(signal);
    // Refused before anything is deleted; each batch checks again under its locks (a run
    // admitted meanwhile stops the erasure there, with `erased` saying how far it got).
    const busy = await this.options.repository.eraseBusy(tenant, userId);
    if (busy > 0) throw runsInProgress(busy, 0);
    for (;;) {
      throwIfAborted(signal);
      const batch = await this.options.repository.eraseBatch(tenant, userId, this.batchSize);
      if (batch.busy > 0) throw runsInProgress(batch.busy, total.sessions);
      total.sessions += batch.ids.length;
      total.items += batch.items;
      total.runs += batch.runs;
      total.outputEvents += batch.outputEvents;
      total.outbox += batch.outbox;
      // After the batch committed: tells every instance's near cache, marks the shared tier
      // (a tombstone) and drops the lease counters.
      await Promise.all(batch.ids.map((id) => this.options.evict(tenant, id)));
      await this.options.output.discard?.(batch.ids.map((id) => sessionKey(tenant, id)));
      // Stored answers (Idempotency-Key) that hold these sessions; a tenant's all go at its end.
      if (userId !== null) await this.options.idempotencyKeys?.deleteNaming(tenant, batch.ids);
      if (batch.ids.length < this.batchSize) return total;
    }
  }
}

function runsInProgress(busy: number, erased: number): RunError {
  return new RunError('session_busy', `${busy} session(s) to erase have a run queued or running; interrupt them first`, {
    sessions: busy,
    erased,
  });
}

function checkTenant(tenant: string): void {
  if (typeof tenant !== 'string' || !TENANT_RE.test(tenant)) {
    throw new ValidationError('tenant may hold letters, digits and _ . - (1 to 64)', { field: 'tenant' });
  }
}
