/**
 * Bounds on the shape of a JSON value, checked without recursion before anything serializes,
 * stores or walks it recursively: a nesting depth, a count of nodes, numbers the store would
 * keep as something else, and strings that are not Unicode.
 *
 * Two entry points over the same rules: `checkJsonText` scans a request body's text before
 * `JSON.parse` (the only place a literal can still be told from the double it parses to),
 * `checkJsonValue` walks a value a library caller passes. What `JSON.stringify` writes, the
 * text scan accepts: a value read from the store can always be sent back as it is.
 */
import { AgentSessionsError } from './errors.js';

export interface JsonShapeLimits {
  /** Most nested objects and arrays (`{}` is 1, `{"a":[]}` is 2). */
  depth: number;
  /** Most nodes: objects, arrays, strings, numbers, literals and member names. */
  nodes: number;
}

export const DEFAULT_JSON_SHAPE: JsonShapeLimits = Object.freeze({ depth: 256, nodes: 100_000 });

function tooDeep(limit: number, field: string | undefined): AgentSessionsError {
  return new AgentSessionsError('json_too_deep', `${field ?? 'the JSON'} nests deeper than ${limit} levels`, {
    details: { limit, ...(field ? { field } : {}) },
  });
}

function tooLarge(limit: number, field: string | undefined): AgentSessionsError {
  return new AgentSessionsError('json_too_large', `${field ?? 'the JSON'} has more than ${limit} nodes`, {
    details: { limit, ...(field ? { field } : {}) },
  });
}

function outOfRange(literal: string, field: string | undefined): AgentSessionsError {
  const shown = literal.length > 40 ? `${literal.slice(0, 37)}...` : literal;
  return new AgentSessionsError(
    'number_out_of_range',
    `the number ${shown}${field ? ` in ${field}` : ''} cannot be stored as it is: numbers are IEEE-754 doubles (integers within ±(2^53−1), at most 17 significant digits)`,
    { details: { number: shown, ...(field ? { field } : {}) } },
  );
}

const isDigit = (c: number) => c >= 0x30 && c <= 0x39;

function notUnicode(field: string | undefined): AgentSessionsError {
  return new AgentSessionsError(
    'invalid_unicode',
    `${field ?? 'a string'} is not Unicode: it holds an unpaired surrogate (e.g. "\\ud800"), which cannot be stored as it is`,
    { details: field ? { field } : {} },
  );
}

/**
 * The exact decimal value of a JSON number literal, written one way per value
 * (`<digits>e<exponent>`, no leading or trailing zeros; `0` for any zero, -0 included).
 */
function canonicalDecimal(literal: string): string {
  let i = 0;
  const negative = literal.charCodeAt(0) === 0x2d;
  if (negative) i = 1;
  let digits = '';
  let exponent = 0;
  let fraction = false;
  for (; i < literal.length; i++) {
    const c = literal.charCodeAt(i);
    if (c === 0x2e) fraction = true;
    else if (c === 0x65 || c === 0x45) {
      exponent += Number(literal.slice(i + 1));
      break;
    } else {
      digits += literal[i];
      if (fraction) exponent--;
    }
  }
  let start = 0;
  while (start < digits.length && digits.charCodeAt(start) === 0x30) start++;
  let end = digits.length;
  while (end > start && digits.charCodeAt(end - 1) === 0x30) {
    end--;
    exponent++;
  }
  if (start === end) return '0';
  return `${negative ? '-' : ''}${digits.slice(start, end)}e${exponent}`;
}

/**
 * Refuses a number literal the store would keep as another number. A value is stored as a
 * double and written back as the shortest decimal that reads as that double (what
 * `JSON.stringify` writes); a literal whose exact value differs from that is refused:
 * one that overflows to ±Infinity (`1e309`) or underflows to 0 (`1e-400`), an integer beyond
 * ±(2^53−1) that JSON.parse rounds (`9007199254740993`, `9007199254740993.0`), a decimal with
 * more digits than a double holds (`0.10000000000000000001`). `-0` is stored as `0`. A literal
 * that is not a number at all is left to the parser.
 */
function checkNumberLiteral(literal: string, field: string | undefined): void {
  // Fast path: up to 15 characters without an exponent is at most 15 significant digits
  // within ±1e15, which a double always keeps (DBL_DIG).
  if (literal.length <= 15) {
    let plain = true;
    for (let i = 0; i < literal.length; i++) {
      const c = literal.charCodeAt(i);
      if (c === 0x65 || c === 0x45) {
        plain = false;
        break;
      }
    }
    if (plain) return;
  }
  const value = Number(literal);
  if (Number.isNaN(value)) return;
  if (!Number.isFinite(value) || canonicalDecimal(literal) !== canonicalDecimal(String(value))) {
    throw outOfRange(literal, field);
  }
}

/**
 * Refuses a `\uXXXX` escape that leaves a surrogate unpaired in the string `text[from, to)`
 * (`from` is its first backslash); JSON.parse would keep it and the store would not.
 */
function checkEscapes(text: string, from: number, to: number): void {
  for (let k = from; k < to; ) {
    if (text.charCodeAt(k) !== 0x5c) {
      k++;
      continue;
    }
    if (text.charCodeAt(k + 1) !== 0x75) {
      k += 2;
      continue;
    }
    const unit = Number.parseInt(text.slice(k + 2, k + 6), 16);
    if (unit >= 0xd800 && unit <= 0xdbff) {
      const next = text.charCodeAt(k + 6) === 0x5c && text.charCodeAt(k + 7) === 0x75 ? Number.parseInt(text.slice(k + 8, k + 12), 16) : NaN;
      if (!(next >= 0xdc00 && next <= 0xdfff)) throw notUnicode(undefined);
      k += 12;
    } else if (unit >= 0xdc00 && unit <= 0xdfff) {
      throw notUnicode(undefined);
    } else {
      k += 6;
    }
  }
}

const LONE_SURROGATE = /\p{Surrogate}/u;

/** Whether `s` is well-formed UTF-16 (no unpaired surrogate). */
function wellFormed(s: string): boolean {
  const native = (s as string & { isWellFormed?: () => boolean }).isWellFormed;
  return native ? native.call(s) : !LONE_SURROGATE.test(s);
}

/**
 * Scans the text of a JSON document once, without recursion and without parsing it: throws
 * `json_too_deep`, `json_too_large`, `number_out_of_range` or `invalid_unicode` (all 400).
 * Syntax errors are not its business: it stays linear on any input and leaves them to
 * `JSON.parse`.
 */
export function checkJsonText(text: string, limits: JsonShapeLimits): void {
  const n = text.length;
  let depth = 0;
  let nodes = 0;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      // A string (a value or a member name): jump to its closing quote, one not escaped by an
      // odd run of backslashes.
      nodes++;
      let end = text.indexOf('"', i + 1);
      while (end !== -1) {
        let backslashes = 0;
        for (let k = end - 1; text.charCodeAt(k) === 0x5c; k--) backslashes++;
        if (backslashes % 2 === 0) break;
        end = text.indexOf('"', end + 1);
      }
      if (end === -1) break;
      const backslash = text.indexOf('\\', i + 1);
      if (backslash !== -1 && backslash < end) checkEscapes(text, backslash, end);
      i = end;
    } else if (c === 0x7b || c === 0x5b) {
      nodes++;
      if (++depth > limits.depth) throw tooDeep(limits.depth, undefined);
    } else if (c === 0x7d || c === 0x5d) {
      depth--;
    } else if (c === 0x2d || isDigit(c)) {
      nodes++;
      let end = i + 1;
      for (; end < n; end++) {
        const d = text.charCodeAt(end);
        if (!(isDigit(d) || d === 0x2e || d === 0x65 || d === 0x45 || d === 0x2b || d === 0x2d)) break;
      }
      checkNumberLiteral(text.slice(i, end), undefined);
      i = end - 1;
    } else if (c === 0x74 || c === 0x66 || c === 0x6e) {
      // true, false, null
      nodes++;
      while (i + 1 < n && text.charCodeAt(i + 1) >= 0x61 && text.charCodeAt(i + 1) <= 0x7a) i++;
    } else {
      continue;
    }
    if (nodes > limits.nodes) throw tooLarge(limits.nodes, undefined);
  }
}

/** Whether `v` is not an object or array, having refused a number or string JSON cannot keep. */
function isCheckedScalar(v: unknown, field: string | undefined): boolean {
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw outOfRange(String(v), field);
    return true;
  }
  if (typeof v === 'string') {
    if (!wellFormed(v)) throw notUnicode(field);
    return true;
  }
  return v === null || typeof v !== 'object';
}

/**
 * Walks a value as `JSON.stringify` would see it (own enumerable keys), with an explicit
 * stack: throws `json_too_deep`, `json_too_large` (a cycle ends as one of them),
 * `number_out_of_range` for NaN and ±Infinity, which JSON would turn into `null`, or
 * `invalid_unicode` for a string or member name with an unpaired surrogate. A double is kept
 * as itself (its JSON is the shortest decimal that reads back as it).
 */
export function checkJsonValue(value: unknown, limits: JsonShapeLimits, field?: string): void {
  if (isCheckedScalar(value, field)) return;
  const values: unknown[] = [value];
  const depths: number[] = [1];
  let nodes = 0;
  while (values.length > 0) {
    const v = values.pop();
    const d = depths.pop() as number;
    if (++nodes > limits.nodes) throw tooLarge(limits.nodes, field);
    if (isCheckedScalar(v, field)) continue;
    if (d > limits.depth) throw tooDeep(limits.depth, field);
    if (Array.isArray(v)) {
      for (const x of v) {
        values.push(x);
        depths.push(d + 1);
      }
    } else {
      const keys = Object.keys(v as object);
      nodes += keys.length;
      for (const k of keys) {
        if (!wellFormed(k)) throw notUnicode(field);
        values.push((v as Record<string, unknown>)[k]);
        depths.push(d + 1);
      }
    }
  }
}
