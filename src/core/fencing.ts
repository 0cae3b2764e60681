/**
 * Fencing tokens without a PostgreSQL write per lease (docs/distributed.md, withSessionLock).
 *
 * A token is `epoch * 2^32 + counter`: the lease service (Redis) counts leases per session
 * within an epoch, and the epoch lives in the source of truth (PostgreSQL). The epoch goes up
 * only when the counters may be behind a token already handed out:
 *
 * - the service holds no epoch (it restarted, or its keyspace was cleared because the server
 *   changed: a restart from an old snapshot is cleared before use), so every instance's next
 *   lease finds it missing, whether or not the instance noticed the restart;
 * - the service's epoch is not the durable one (installed from an older bump, or restored);
 * - the token would not be above the newest the session row has seen (a PostgreSQL lease
 *   handed it out while the service was unreachable, or a write carried it);
 * - the counter ran out (2^32 leases of one session in one epoch).
 *
 * In each case the lease is given back, the epoch moves above every epoch seen, and the
 * attempt starts again: the new counter starts at 1 in an epoch no token was handed out in.
 * Epochs of the lease service are even; the PostgreSQL lease that stands in while it is
 * unreachable hands out tokens in the odd epoch above, so no token is handed out twice even
 * while the two kinds of lease overlap.
 * The lease's committed version is read from PostgreSQL after the lease was taken, so a holder
 * sees every write acknowledged before (near-cache rule 5), at the cost of a primary-key read.
 */
import { NotFoundError } from './errors.js';
import type { CountedLease, LeaseCounterStore, LockEpochStore, SessionLease, SessionLockStore } from './ports.js';

/**
 * Tokens per epoch: the counter's range. session-lock-acquire.sql and session-lock-epoch-bump.sql
 * use the same span and the even/odd rule (test/unit/fencing.test.ts checks).
 */
export const EPOCH_SPAN = 2 ** 32;
/** The highest epoch whose tokens are still safe integers (JavaScript numbers, bigint in PostgreSQL). */
export const MAX_EPOCH = 2 ** 53 / EPOCH_SPAN - 1;

export function composeToken(epoch: number, counter: number): number {
  return epoch * EPOCH_SPAN + counter;
}

/** The epoch a token belongs to (tokens below 2^32, from a PostgreSQL lease before epochs, are epoch 0). */
export function epochOf(token: number): number {
  return Math.floor(token / EPOCH_SPAN);
}

export interface EpochFencedLockStoreOptions {
  counters: LeaseCounterStore;
  epochs: LockEpochStore;
  /** Used while the lease service cannot be asked; its tokens must be above the current epoch's. */
  fallback: SessionLockStore;
  /** Attempts per `tryAcquire` that may each move the epoch; then it reports the lease as held. */
  maxEpochMoves?: number;
}

export class EpochFencedLockStore implements SessionLockStore {
  readonly kind = 'redis';
  private readonly counters: LeaseCounterStore;
  private readonly epochs: LockEpochStore;
  private readonly fallback: SessionLockStore;
  private readonly maxEpochMoves: number;
  /** The epoch move in progress on this instance: concurrent leases that need one wait for it. */
  private moving: Promise<void> | null = null;

  constructor(options: EpochFencedLockStoreOptions) {
    this.counters = options.counters;
    this.epochs = options.epochs;
    this.fallback = options.fallback;
    this.maxEpochMoves = options.maxEpochMoves ?? 3;
  }

  async tryAcquire(tenant: string, sessionId: string, ttlMs: number): Promise<SessionLease | null> {
    for (let moves = 0; ; moves++) {
      const attempt = await this.counters.tryAcquire(tenant, sessionId, ttlMs);
      if (attempt.outcome === 'unavailable') return this.fallback.tryAcquire(tenant, sessionId, ttlMs);
      if (attempt.outcome === 'held') return null;
      if (moves >= this.maxEpochMoves) {
        // Epochs kept moving under this attempt (other instances bumping too): give the lease
        // back and let the caller's backoff try again.
        if (attempt.outcome === 'taken') await attempt.lease.release().catch(() => undefined);
        return null;
      }
      if (attempt.outcome === 'no_epoch') {
        await this.moveEpoch(0);
        continue;
      }
      const { lease } = attempt;
      const fenced = await this.check(tenant, sessionId, lease);
      if (fenced) return fenced;
    }
  }

  async newestToken(tenant: string, sessionId: string): Promise<number | null> {
    const last = await this.counters.lastCounter(tenant, sessionId);
    return last && composeToken(last.epoch, last.counter);
  }

  /**
   * Called only after the session's row was deleted: its counter goes with it, so Redis does
   * not keep one per session ever locked. A session created again under the id starts at
   * counter 1 against a row whose `fence` is 0, as a re-created row did under the PostgreSQL
   * lease. A row that still exists (an expired session) keeps its counter: its tokens,
   * including those handed out and not used, stay below every later one.
   */
  forgetSession(tenant: string, sessionId: string): Promise<void> {
    return this.counters.forget(tenant, sessionId);
  }

  /** The lease with its token, or null after giving it back because the epoch had to move. */
  private async check(tenant: string, sessionId: string, lease: CountedLease): Promise<SessionLease | null> {
    let row: Awaited<ReturnType<LockEpochStore['read']>>;
    try {
      row = await this.epochs.read(tenant, sessionId);
    } catch (err) {
      await lease.release().catch(() => undefined);
      throw err;
    }
    if (!row) {
      await lease.discard().catch(() => undefined);
      throw new NotFoundError('session', sessionId);
    }
    const token = composeToken(lease.epoch, lease.counter);
    if (lease.epoch === row.epoch && lease.counter < EPOCH_SPAN && token > row.fence) {
      return { fencingToken: token, sessionVersion: row.version, renew: lease.renew, release: lease.release };
    }
    await lease.release().catch(() => undefined);
    await this.moveEpoch(Math.max(lease.epoch, row.epoch ?? 0, epochOf(row.fence)) + 1);
    return null;
  }

  /** Bumps the durable epoch to at least `atLeast` and installs it; one move at a time per instance. */
  private async moveEpoch(atLeast: number): Promise<void> {
    if (this.moving) return this.moving;
    this.moving = (async () => {
      const epoch = await this.epochs.bump(atLeast);
      if (epoch > MAX_EPOCH) throw new Error(`lock epoch ${epoch} leaves no room for fencing tokens below 2^53`);
      await this.counters.installEpoch(epoch);
    })().finally(() => {
      this.moving = null;
    });
    return this.moving;
  }
}
