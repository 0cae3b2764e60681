/**
 * The JSON shape checks: depth and node count without recursion (a value 100,000 levels deep
 * is refused, not a stack overflow), numbers the store would change refused, and the text
 * scan agreeing with the value walk on every generated value.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checkJsonText, checkJsonValue, DEFAULT_JSON_SHAPE } from '../../src/core/json-shape.js';
import { AgentSessionsError } from '../../src/core/errors.js';

function codeOf(fn: () => void): string | null {
  try {
    fn();
    return null;
  } catch (err) {
    if (err instanceof AgentSessionsError) return err.code;
    throw err;
  }
}

const nested = (depth: number) => `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;
const nestedValue = (depth: number) => {
  let v: unknown = 1;
  for (let i = 0; i < depth; i++) v = [v];
  return v;
};

describe('JSON shape', () => {
  it('refuses nesting past the limit in text and values, at any depth, without a stack overflow', () => {
    expect(codeOf(() => checkJsonText(nested(256), DEFAULT_JSON_SHAPE))).toBeNull();
    expect(codeOf(() => checkJsonText(nested(257), DEFAULT_JSON_SHAPE))).toBe('json_too_deep');
    expect(codeOf(() => checkJsonText(nested(100_000), DEFAULT_JSON_SHAPE))).toBe('json_too_deep');
    expect(codeOf(() => checkJsonText('['.repeat(1_000_000), DEFAULT_JSON_SHAPE))).toBe('json_too_deep');
    expect(codeOf(() => checkJsonValue(nestedValue(256), DEFAULT_JSON_SHAPE))).toBeNull();
    expect(codeOf(() => checkJsonValue(nestedValue(257), DEFAULT_JSON_SHAPE))).toBe('json_too_deep');
    expect(codeOf(() => checkJsonValue(nestedValue(100_000), DEFAULT_JSON_SHAPE))).toBe('json_too_deep');
    const cycle: Record<string, unknown> = {};
    cycle.self = cycle;
    expect(['json_too_deep', 'json_too_large']).toContain(codeOf(() => checkJsonValue(cycle, DEFAULT_JSON_SHAPE)));
  });

  it('refuses more nodes than the limit', () => {
    const shape = { depth: 10, nodes: 100 };
    expect(codeOf(() => checkJsonText(JSON.stringify(Array(99).fill(0)), shape))).toBeNull();
    expect(codeOf(() => checkJsonText(JSON.stringify(Array(100).fill(0)), shape))).toBe('json_too_large');
    expect(codeOf(() => checkJsonValue(Array(99).fill(0), shape))).toBeNull();
    expect(codeOf(() => checkJsonValue(Array(100).fill(0), shape))).toBe('json_too_large');
    // Member names count: 50 members are 101 nodes with their object.
    const members = Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`k${i}`, i]));
    expect(codeOf(() => checkJsonText(JSON.stringify(members), shape))).toBe('json_too_large');
    expect(codeOf(() => checkJsonValue(members, shape))).toBe('json_too_large');
  });

  it('refuses number literals the store would change, keeps the others', () => {
    const refused = [
      '1e309', '-1e309', '1E400', '9007199254740993', '-9007199254740993', '9007199254740993.0', '9007199254740993e0',
      '123456789012345678901234567890', '12345678901234567890', '1e-400', '-2.5e-999', '0.10000000000000000001', '3.14159265358979323846',
    ];
    for (const n of refused) {
      expect(codeOf(() => checkJsonText(`{"k":${n}}`, DEFAULT_JSON_SHAPE)), n).toBe('number_out_of_range');
      expect(codeOf(() => checkJsonText(`[1,2,${n}]`, DEFAULT_JSON_SHAPE)), n).toBe('number_out_of_range');
    }
    const kept = [
      '0', '-0', '0.0', '0e10', '-0.0000e-999999', '9007199254740991', '-9007199254740991', '9007199254740992', '1700000000000000000',
      '12345678901234567000', '1e20', '1e300', '1E+300', '1.7976931348623157e308', '5e-324', '0.1', '-1.5', '3.141592653589793', '100.000',
    ];
    for (const n of kept) expect(codeOf(() => checkJsonText(`{"k":${n}}`, DEFAULT_JSON_SHAPE)), n).toBeNull();
    // Digits inside strings are text, not numbers.
    expect(codeOf(() => checkJsonText('{"k":"1e309","9007199254740993":"\\"1e999"}', DEFAULT_JSON_SHAPE))).toBeNull();
    for (const v of [Infinity, -Infinity, NaN]) {
      expect(codeOf(() => checkJsonValue({ a: [v] }, DEFAULT_JSON_SHAPE))).toBe('number_out_of_range');
      expect(codeOf(() => checkJsonValue(v, DEFAULT_JSON_SHAPE))).toBe('number_out_of_range');
    }
    expect(codeOf(() => checkJsonValue({ a: 2 ** 60, b: -0, c: 1e300 }, DEFAULT_JSON_SHAPE))).toBeNull();
  });

  it('accepts every double as JSON.stringify writes it: what the store returns can be sent back', () => {
    fc.assert(
      fc.property(fc.double({ noNaN: true, noDefaultInfinity: true }), (d) => {
        expect(codeOf(() => checkJsonText(JSON.stringify({ k: d, a: [d] }), DEFAULT_JSON_SHAPE))).toBeNull();
      }),
      { numRuns: 5_000 },
    );
  });

  it('refuses unpaired surrogates in strings and member names, as text and as values', () => {
    for (const text of ['"\\ud800"', '"a\\udc00b"', '{"\\ud83d":1}', '"\\ud83d\\u0041"', '["x\\\\", "\\udfff"]']) {
      expect(codeOf(() => checkJsonText(text, DEFAULT_JSON_SHAPE)), text).toBe('invalid_unicode');
    }
    for (const text of ['"\\ud83d\\ude00"', '"\\\\ud800"', '"😀"', '"\\u00e9"']) {
      expect(codeOf(() => checkJsonText(text, DEFAULT_JSON_SHAPE)), text).toBeNull();
    }
    expect(codeOf(() => checkJsonValue({ a: 'x\ud800' }, DEFAULT_JSON_SHAPE))).toBe('invalid_unicode');
    expect(codeOf(() => checkJsonValue({ ['\udc00']: 1 }, DEFAULT_JSON_SHAPE))).toBe('invalid_unicode');
    expect(codeOf(() => checkJsonValue('\ud800', DEFAULT_JSON_SHAPE))).toBe('invalid_unicode');
    expect(codeOf(() => checkJsonValue({ a: '😀' }, DEFAULT_JSON_SHAPE))).toBeNull();
    const unit = fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c));
    fc.assert(
      fc.property(fc.string({ unit, maxLength: 8 }), (str) => {
        const wellFormed = !/\p{Surrogate}/u.test(str);
        expect(codeOf(() => checkJsonText(JSON.stringify({ [str]: str }), DEFAULT_JSON_SHAPE)) === null).toBe(wellFormed);
        expect(codeOf(() => checkJsonValue({ [str]: str }, DEFAULT_JSON_SHAPE)) === null).toBe(wellFormed);
      }),
      { numRuns: 3_000 },
    );
  });

  it('leaves syntax errors to the parser and stays linear on any text', () => {
    for (const text of ['', '{', '"', '"\\', '[1,', '-', '--1', 'tru', '{"a":1e}', '01', '\u0000']) {
      expect(codeOf(() => checkJsonText(text, DEFAULT_JSON_SHAPE)), JSON.stringify(text)).toBeNull();
    }
    // Long runs of backslashes and quotes: each quote looks back only over its own run.
    expect(codeOf(() => checkJsonText(`"${'\\"'.repeat(200_000)}"`, DEFAULT_JSON_SHAPE))).toBeNull();
  });

  it('the text scan and the value walk refuse the same values (as a body carries it)', () => {
    const shape = { depth: 4, nodes: 30 };
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 6 }), (value) => {
        const text = JSON.stringify(value);
        // fast-check's JSON values include -0, which JSON writes as 0: both forms are kept.
        // Both refuse the same values; which limit is met first depends on the walk's order.
        const byText = codeOf(() => checkJsonText(text, shape));
        const byValue = codeOf(() => checkJsonValue(value, shape));
        expect(byText === null, `${text}: ${byText} / ${byValue}`).toBe(byValue === null);
      }),
      { numRuns: 2_000 },
    );
  });
});
