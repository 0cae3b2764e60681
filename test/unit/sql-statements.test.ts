/** The static SQL files: each parses, names every parameter it uses and describes its reply. */
import { describe, expect, it } from 'vitest';
import { readdirSync, readFileSync } from 'node:fs';
import { bind, loadStatements, OUTBOX_WRITER, parseStatement } from '../../src/adapters/postgres/sql.js';

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

  it('has one outbox writer: every statement that writes events ends with OUTBOX_WRITER, no other code inserts', () => {
    const writers = Object.values(loadStatements()).filter((st) => /insert\s+into\s+outbox/i.test(st.text));
    expect(writers.length).toBeGreaterThan(5);
    for (const st of writers) expect(st.text, st.name).toContain(OUTBOX_WRITER);
    const direct = '-- op: x\n-- reply: r\nINSERT INTO outbox (tenant_id, type, session_id, payload) VALUES (1, 2, 3, 4)';
    expect(() => parseStatement('op', direct)).toThrow(/OUTBOX_WRITER/);
    const twice = `-- op: x\n-- reply: r\nWITH events AS (SELECT 1), ${OUTBOX_WRITER}, b AS (INSERT INTO outbox SELECT 1) SELECT 1`;
    expect(() => parseStatement('op', twice)).toThrow(/OUTBOX_WRITER/);
    const src = new URL('../../src/', import.meta.url);
    const code = (readdirSync(src, { recursive: true }) as string[]).filter((f) => f.endsWith('.ts'));
    const inTs = code.filter((f) => /insert\s+into\s+outbox/i.test(readFileSync(new URL(f, src), 'utf8').replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, '')));
    expect(inTs.filter((f) => !f.endsWith('sql.ts') && !f.endsWith('outbox-signal.ts'))).toEqual([]);
  });
});
