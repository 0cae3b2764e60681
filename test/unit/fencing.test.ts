/** The fencing token's composition (src/core/fencing.ts) and the SQL that mirrors it. */
import { describe, expect, it } from 'vitest';
import { loadStatements } from '../../src/adapters/postgres/sql.js';
import { composeToken, EPOCH_SPAN, epochOf, MAX_EPOCH } from '../../src/core/fencing.js';

describe('fencing tokens', () => {
  it('orders by epoch first, then by counter', () => {
    expect(composeToken(2, EPOCH_SPAN - 1)).toBeLessThan(composeToken(3, 1));
    expect(composeToken(2, 5)).toBeLessThan(composeToken(2, 6));
    expect(epochOf(composeToken(7, 1))).toBe(7);
    expect(epochOf(composeToken(7, EPOCH_SPAN - 1))).toBe(7);
    // A token of a PostgreSQL lease from before epochs (a plain count) is epoch 0.
    expect(epochOf(41)).toBe(0);
  });

  it('the highest token of the highest epoch is still an exact integer', () => {
    const highest = composeToken(MAX_EPOCH, EPOCH_SPAN - 1);
    expect(Number.isSafeInteger(highest)).toBe(true);
    expect(Number.isSafeInteger(highest + 1)).toBe(false);
  });

  it('the PostgreSQL lease and the epoch move use the same span and the even/odd rule', () => {
    const sql = loadStatements();
    expect(sql.sessionLockAcquire?.text).toContain(`(e.epoch + 1) * ${EPOCH_SPAN} + 1`);
    expect(sql.sessionLockEpochBump?.text).toContain('+ 1) / 2 * 2');
  });
});
