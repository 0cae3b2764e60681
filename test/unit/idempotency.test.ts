/** The pure parts of idempotent calls: key rules, request fingerprints, effects held until a commit. */
import { describe, expect, it } from 'vitest';
import { afterCommit, collectingEffects, CommitEffects, onRollback } from '../../src/core/commit-effects.js';
import { checkIdempotencyKey, IdempotentCalls, requestFingerprint, type IdempotencyStore, type StoredAnswer, type StoredKey } from '../../src/core/idempotency.js';

describe('idempotency keys', () => {
  it('takes 1 to 255 printable ASCII characters, nothing else', () => {
    for (const ok of ['a', ' ', '~', 'x'.repeat(255), 'order-42:retry/1', '550e8400-e29b-41d4-a716-446655440000']) {
      expect(() => checkIdempotencyKey(ok), ok).not.toThrow();
    }
    for (const bad of ['', 'x'.repeat(256), 'tab\t', 'new\nline', 'é', '\u0000', 42, null, undefined]) {
      expect(() => checkIdempotencyKey(bad), String(bad)).toThrow(expect.objectContaining({ code: 'validation_failed' }));
    }
  });

  it('fingerprints ignore key order and undefined members, and tell any other difference', () => {
    const a = requestFingerprint({ method: 'POST', body: { total_turns: 1, input_tokens: 2 } });
    expect(requestFingerprint({ body: { input_tokens: 2, total_turns: 1 }, method: 'POST' })).toBe(a);
    expect(requestFingerprint({ method: 'POST', body: { input_tokens: 2, total_turns: 1, x: undefined } })).toBe(a);
    expect(requestFingerprint({ method: 'POST', body: { total_turns: 2, input_tokens: 2 } })).not.toBe(a);
    expect(requestFingerprint({ method: 'POST', body: [1, 2] })).not.toBe(requestFingerprint({ method: 'POST', body: [2, 1] }));
    expect(requestFingerprint({ a: '1' })).not.toBe(requestFingerprint({ a: 1 }));
  });
});

describe('commit effects', () => {
  it('run at once outside a unit, after the commit inside one, never after a rollback', async () => {
    const seen: string[] = [];
    await afterCommit(() => void seen.push('outside'));
    expect(seen).toEqual(['outside']);

    const committed = new CommitEffects();
    await collectingEffects(committed, async () => {
      await afterCommit(() => void seen.push('first'));
      await afterCommit(async () => {
        seen.push('second');
        // An effect's own effects (a cache set inside a launch) run at once: the unit committed.
        await afterCommit(() => void seen.push('nested'));
      });
      onRollback(() => void seen.push('undo'));
    });
    expect(seen).toEqual(['outside']);
    await committed.commit();
    expect(seen).toEqual(['outside', 'first', 'second', 'nested']);

    const rolledBack = new CommitEffects();
    await collectingEffects(rolledBack, async () => {
      await afterCommit(() => void seen.push('never'));
      onRollback(() => void seen.push('undo'));
    });
    rolledBack.rollback();
    await committed.commit();
    expect(seen).toEqual(['outside', 'first', 'second', 'nested', 'undo']);
  });

  it('a failing effect does not stop the others and is reported', async () => {
    const errors: unknown[] = [];
    const seen: string[] = [];
    const effects = new CommitEffects();
    await collectingEffects(effects, async () => {
      await afterCommit(() => {
        throw new Error('cache down');
      });
      await afterCommit(() => void seen.push('after'));
    });
    await effects.commit((err) => errors.push(err));
    expect(seen).toEqual(['after']);
    expect(errors).toHaveLength(1);
  });
});

/** A store in memory: one transaction at a time, a conflict on demand. */
class MemoryStore implements IdempotencyStore {
  readonly rows = new Map<string, StoredKey>();
  conflicts = 0;

  async find(tenant: string, key: string): Promise<StoredKey | null> {
    return this.rows.get(`${tenant}/${key}`) ?? null;
  }

  async execute(tenant: string, key: string, fingerprint: string, _ttl: number, fn: () => Promise<StoredAnswer>) {
    for (;;) {
      const stored = this.rows.get(`${tenant}/${key}`) ?? null;
      if (stored) return { stored, answer: stored.answer };
      const answer = await fn();
      // A conflict aborts the transaction: nothing is stored and fn runs again.
      if (this.conflicts > 0) {
        this.conflicts--;
        continue;
      }
      if (answer.status >= 200 && answer.status < 300) this.rows.set(`${tenant}/${key}`, { fingerprint, answer });
      return { stored: null, answer };
    }
  }

  async pruneExpired(): Promise<number> {
    return 0;
  }

  async deleteTenant(): Promise<number> {
    return 0;
  }

  async deleteNaming(): Promise<number> {
    return 0;
  }
}

describe('IdempotentCalls', () => {
  it('runs the effects of the last attempt only, once, and none on a replay', async () => {
    const store = new MemoryStore();
    store.conflicts = 2;
    const calls = new IdempotentCalls(store);
    let attempts = 0;
    const launched: number[] = [];
    const discarded: number[] = [];
    const op = async (): Promise<StoredAnswer> => {
      const attempt = ++attempts;
      onRollback(() => void discarded.push(attempt));
      await afterCommit(() => void launched.push(attempt));
      return { status: 202, headers: {}, body: { attempt } };
    };
    const first = await calls.run('t', 'k', 'f', op);
    expect(first).toEqual({ answer: { status: 202, headers: {}, body: { attempt: 3 } }, replayed: false });
    expect(launched).toEqual([3]);
    expect(discarded).toEqual([1, 2]);
    const again = await calls.run('t', 'k', 'f', op);
    expect(again).toEqual({ answer: first.answer, replayed: true });
    expect(attempts).toBe(3);
    expect(launched).toEqual([3]);
    await expect(calls.run('t', 'k', 'other', op)).rejects.toMatchObject({ code: 'idempotency_key_reused' });
    // Per tenant.
    expect((await calls.run('u', 'k', 'other', op)).replayed).toBe(false);
  });

  it('stores nothing for an error and rolls its effects back', async () => {
    const store = new MemoryStore();
    const calls = new IdempotentCalls(store);
    const launched: string[] = [];
    const discarded: string[] = [];
    await expect(
      calls.run('t', 'k', 'f', async () => {
        onRollback(() => void discarded.push('run'));
        await afterCommit(() => void launched.push('run'));
        throw Object.assign(new Error('busy'), { code: 'session_busy' });
      }),
    ).rejects.toMatchObject({ code: 'session_busy' });
    expect(launched).toEqual([]);
    expect(discarded).toEqual(['run']);
    expect(store.rows.size).toBe(0);
  });
});
