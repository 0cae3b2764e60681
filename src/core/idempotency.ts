/**
 * Idempotent calls (SPEC §7.1): a POST sent with an `Idempotency-Key` executes once per tenant
 * and key; its first 2xx answer is stored for 24 hours and every retry gets it again.
 *
 * The answer is stored in the transaction of the operation it answers (the store runs the
 * operation inside one ambient transaction, see adapters/postgres/ambient-transaction.ts), so
 * commit and store are one event: a crash after the commit still leaves the answer, a failure
 * before it leaves neither. Uses of one key are serialized in that transaction (an advisory
 * lock), so concurrent duplicates execute once: the others wait, then find the answer. The
 * operation's effects outside the database (caches, live output, signals, a run's launch) are
 * collected (commit-effects.ts) and run after the commit, once: a replay runs none.
 *
 * Errors are not stored (the transaction rolls back; a retry is evaluated again), and the same
 * key with another request (its fingerprint) is a 422 `idempotency_key_reused`.
 */
import { createHash } from 'node:crypto';
import { CommitEffects, collectingEffects } from './commit-effects.js';
import { AgentSessionsError, ValidationError } from './errors.js';
import type { SweepTask } from './sweeper.js';

/** How long an answer is replayed (24 h). */
export const IDEMPOTENCY_TTL_SECONDS = 24 * 60 * 60;

/** 1 to 255 printable ASCII characters (space to tilde). */
const KEY_RE = /^[\x20-\x7e]{1,255}$/;

/** An answer as stored and replayed. */
export interface StoredAnswer {
  status: number;
  /** Headers that belong to the answer (etag, location). */
  headers: Record<string, string>;
  /** The body (JSON), or null for none. */
  body: unknown;
}

export interface StoredKey {
  fingerprint: string;
  answer: StoredAnswer;
}

/** Where answers are kept (PostgreSQL). */
export interface IdempotencyStore {
  /** The unexpired answer of a tenant's key, or null. */
  find(tenant: string, key: string): Promise<StoredKey | null>;
  /**
   * In one transaction, holding the key's lock: the unexpired answer of the key if there is
   * one (`fn` is not called), else `fn` runs, every statement it issues joining the
   * transaction, and its answer is stored with it when it is a success (`isStoredAnswer`).
   * `fn` may be called again when the transaction conflicts.
   */
  execute(
    tenant: string,
    key: string,
    fingerprint: string,
    ttlSeconds: number,
    fn: () => Promise<StoredAnswer>,
  ): Promise<{ stored: StoredKey | null; answer: StoredAnswer }>;
  /** Deletes up to `limit` expired keys; resolves to how many. */
  pruneExpired(limit: number): Promise<number>;
  /** Deletes every key of a tenant (erasure); resolves to how many. */
  deleteTenant(tenant: string): Promise<number>;
  /** Deletes a tenant's keys whose answer names one of `sessionIds` (user erasure); resolves to how many. */
  deleteNaming(tenant: string, sessionIds: readonly string[]): Promise<number>;
}

export interface IdempotentOutcome {
  answer: StoredAnswer;
  /** True when the answer is a stored one (the operation did not execute now). */
  replayed: boolean;
}

export interface IdempotentCallOptions {
  /** Called with an effect that failed after the commit (logged; the answer stands). */
  onEffectError?: (err: unknown) => void;
  /**
   * Test-only fault point: called after the commit, before the effects run and the answer
   * leaves (a test kills the process here to show a crash after commit still replays).
   */
  afterCommit?: () => void;
}

/** Throws 400 unless `key` is 1 to 255 printable ASCII characters. */
export function checkIdempotencyKey(key: unknown): asserts key is string {
  if (typeof key !== 'string' || !KEY_RE.test(key)) {
    throw new ValidationError('Idempotency-Key must be 1 to 255 printable ASCII characters', { field: 'idempotency-key' });
  }
}

/** A stable digest of a request (method, route, parameters, body): object keys sorted, so key order does not matter. */
export function requestFingerprint(parts: unknown): string {
  return createHash('sha256').update(canonicalJson(parts)).digest('base64url');
}

function canonicalJson(value: unknown): string {
  if (value === undefined) return 'null';
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
}

function reused(key: string): AgentSessionsError {
  return new AgentSessionsError('idempotency_key_reused', 'this Idempotency-Key was used with another request', {
    details: { key },
  });
}

/** Only a success is kept: an error answer is evaluated again on retry. */
export function isStoredAnswer(answer: StoredAnswer): boolean {
  return answer.status >= 200 && answer.status <= 299;
}

export class IdempotentCalls {
  constructor(
    private readonly store: IdempotencyStore,
    private readonly options: IdempotentCallOptions = {},
  ) {}

  /**
   * Runs `fn` once for (`tenant`, `key`) and the request `fingerprint`, or replays the answer
   * stored by the first run. `fn` builds the whole answer; it may run more than once when the
   * transaction conflicts, only its last run's effects happen.
   */
  async run(tenant: string, key: string, fingerprint: string, fn: () => Promise<StoredAnswer>): Promise<IdempotentOutcome> {
    checkIdempotencyKey(key);
    // A retry of an answered request needs no transaction and no lock.
    const found = await this.store.find(tenant, key);
    if (found) return this.replay(found, key, fingerprint);
    let effects: CommitEffects | null = null;
    let outcome: { stored: StoredKey | null; answer: StoredAnswer };
    try {
      outcome = await this.store.execute(tenant, key, fingerprint, IDEMPOTENCY_TTL_SECONDS, async () => {
        // A conflict ran the transaction again: the earlier attempt's effects are void.
        effects?.rollback();
        const attempt = new CommitEffects();
        effects = attempt;
        return collectingEffects(attempt, fn);
      });
    } catch (err) {
      (effects as CommitEffects | null)?.rollback();
      throw err;
    }
    if (outcome.stored) {
      (effects as CommitEffects | null)?.rollback();
      return this.replay(outcome.stored, key, fingerprint);
    }
    this.options.afterCommit?.();
    await (effects as CommitEffects | null)?.commit(this.options.onEffectError);
    return { answer: outcome.answer, replayed: false };
  }

  private replay(found: StoredKey, key: string, fingerprint: string): IdempotentOutcome {
    if (found.fingerprint !== fingerprint) throw reused(key);
    return { answer: found.answer, replayed: true };
  }

  /** The sweep that deletes expired keys (their answers are no longer replayed). */
  sweepTask(batch = 500, maxBatches = 20): SweepTask {
    return {
      name: 'prune_idempotency_keys',
      run: async (signal) => {
        let total = 0;
        for (let i = 0; i < maxBatches && !signal?.aborted; i++) {
          const n = await this.store.pruneExpired(batch);
          total += n;
          if (n < batch) break;
        }
        return total;
      },
    };
  }

  /** Deletes every key of a tenant (tenant erasure). */
  deleteTenant(tenant: string): Promise<number> {
    return this.store.deleteTenant(tenant);
  }

  /** Deletes the stored answers that name one of the sessions (user erasure). */
  deleteNaming(tenant: string, sessionIds: readonly string[]): Promise<number> {
    return this.store.deleteNaming(tenant, sessionIds);
  }
}
