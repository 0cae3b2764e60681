/** The static SQL files: each parses, names every parameter it uses and describes its reply. */
import { describe, expect, it } from 'vitest';
import { bind, loadStatements, parseStatement } from '../../src/adapters/postgres/sql.js';

describe('sql statements', () => {
  it('loads every file of src/adapters/postgres/sql with a valid header', () => {
    const all = loadStatements();
    expect(Object.keys(all).length).toBeGreaterThan(0);
    for (const s of Object.values(all)) expect(s.text.length).toBeGreaterThan(0);
  });

  it('refuses a header that disagrees with its statement', () => {
    const ok = '-- op: does it.\n-- $1 id uuid\n-- reply: a row\nSELECT $1::uuid';
    expect(parseStatement('op', ok).params).toEqual(['id']);
    expect(() => parseStatement('other', ok)).toThrow(/must open with/);
    expect(() => parseStatement('op', '-- op: x\n-- reply: r\nSELECT $1')).toThrow(/does not name/);
    expect(() => parseStatement('op', '-- op: x\n-- $1 a\n-- $2 b\n-- reply: r\nSELECT $1')).toThrow(/does not use/);
    expect(() => parseStatement('op', '-- op: x\n-- $2 a\n-- reply: r\nSELECT $2')).toThrow(/out of order/);
    expect(() => parseStatement('op', '-- op: x\nSELECT 1')).toThrow(/reply/);
  });

  it('binds parameters by name and refuses missing or unknown ones', () => {
    const s = parseStatement('op', '-- op: x\n-- $1 id\n-- $2 tenant\n-- reply: r\nSELECT $1, $2');
    expect(bind(s, { tenant: 't', id: 'i' })).toEqual(['i', 't']);
    expect(bind(s, { tenant: undefined, id: 'i' })).toEqual(['i', null]);
    expect(() => bind(s, { id: 'i' })).toThrow(/no value for tenant/);
    expect(() => bind(s, { id: 'i', tenant: 't', extra: 1 })).toThrow(/no parameter extra/);
  });
});
