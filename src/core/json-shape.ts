/**
 * Bounds on the shape of a JSON value, checked without recursion before anything serializes,
 * stores or walks it recursively: a nesting depth, a count of nodes, and numbers the store
 * would keep as something else.
 *
 * Two entry points over the same rules: `checkJsonText` scans a request body's text before
 * `JSON.parse` (the only place an integer literal beyond 2^53 can still be told from its
 * rounded double), `checkJsonValue` walks a value a library caller passes.
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
    `the number ${shown}${field ? ` in ${field}` : ''} cannot be stored as it is: numbers are IEEE-754 doubles, integers must be within ±(2^53−1)`,
    { details: { number: shown, ...(field ? { field } : {}) } },
  );
}

const isDigit = (c: number) => c >= 0x30 && c <= 0x39;

/**
 * Refuses a number literal whose value the store would keep as something else: one that
 * overflows to ±Infinity (`1e309`), an integer written without fraction or exponent beyond
 * ±(2^53−1) (JSON.parse rounds `9007199254740993` to ...992), or a non-zero literal that
 * underflows to 0 (`1e-400`). A decimal with more digits than a double holds (`0.1`) is kept
 * to a double's precision, as everywhere in JSON; `-0` is stored as `0`. A literal that is
 * not a number at all is left to the parser.
 */
function checkNumberLiteral(literal: string, field: string | undefined): void {
  const value = Number(literal);
  if (Number.isNaN(value)) return;
  if (!Number.isFinite(value)) throw outOfRange(literal, field);
  let integral = true;
  let nonZeroMantissa = false;
  for (let i = 0; i < literal.length; i++) {
    const c = literal.charCodeAt(i);
    if (c === 0x2e) integral = false; // .
    else if (c === 0x65 || c === 0x45) {
      integral = false; // e, E: the exponent's digits are not the mantissa's
      break;
    } else if (c >= 0x31 && c <= 0x39) nonZeroMantissa = true;
  }
  if (integral && !Number.isSafeInteger(value)) throw outOfRange(literal, field);
  if (value === 0 && nonZeroMantissa) throw outOfRange(literal, field);
}

/**
 * Scans the text of a JSON document once, without recursion and without parsing it: throws
 * `json_too_deep`, `json_too_large` or `number_out_of_range` (all 400). Syntax errors are not
 * its business: it stays linear on any input and leaves them to `JSON.parse`.
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

/**
 * Walks a value as `JSON.stringify` would see it (own enumerable keys), with an explicit
 * stack: throws `json_too_deep`, `json_too_large` (a cycle ends as one of them) or
 * `number_out_of_range` for NaN and ±Infinity, which JSON would turn into `null`.
 */
export function checkJsonValue(value: unknown, limits: JsonShapeLimits, field?: string): void {
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw outOfRange(String(value), field);
    return;
  }
  if (value === null || typeof value !== 'object') return;
  const values: unknown[] = [value];
  const depths: number[] = [1];
  let nodes = 0;
  while (values.length > 0) {
    const v = values.pop();
    const d = depths.pop() as number;
    if (++nodes > limits.nodes) throw tooLarge(limits.nodes, field);
    if (typeof v === 'number') {
      if (!Number.isFinite(v)) throw outOfRange(String(v), field);
      continue;
    }
    if (v === null || typeof v !== 'object') continue;
    if (d > limits.depth) throw tooDeep(limits.depth, field);
    if (Array.isArray(v)) {
      for (const x of v) {
        values.push(x);
        depths.push(d + 1);
      }
    } else {
      const keys = Object.keys(v);
      nodes += keys.length;
      for (const k of keys) {
        values.push((v as Record<string, unknown>)[k]);
        depths.push(d + 1);
      }
    }
  }
}
