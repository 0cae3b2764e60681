/**
 * Building blocks of the wire contract: nullable fields, timestamps, ids, pages, the
 * problem+json body, and the one rule that maps the core's camelCase names to the API's
 * snake_case ones (so no field list is ever typed twice).
 */
import { Type, type TSchema } from 'typebox';
import { PAGE_SIZE_CEILING } from '../core/limits.js';
import { SESSION_ID_PATTERN } from '../core/types.js';

export const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);

export const DateTime = Type.String({ format: 'date-time' });

/** One of a core constant's values (a string enum, typed as such in the OpenAPI document). */
export function StringEnum<const T extends readonly string[]>(values: T, options: { description?: string } = {}) {
  return Type.Unsafe<T[number]>({ type: 'string', enum: [...values], ...options });
}

/** Session ids as the API accepts them today (server-generated UUIDv7, or a client's UUID). */
export const SessionId = Type.String({
  pattern: SESSION_ID_PATTERN,
  maxLength: 128,
  description: 'Session id: chosen by the client (1 to 128 of A-Z a-z 0-9 _ : - ., not starting with .) or a UUIDv7 from the server; unique per tenant',
});
export const RunId = Type.String({ format: 'uuid', description: 'Run id (UUID)' });

export const SessionIdParams = Type.Object({ id: SessionId }, { additionalProperties: false });

export const Cursor = Type.String({ maxLength: 512 });

/** A page size; the configured MAX_PAGE_SIZE is enforced by the service (400 validation_failed). */
export const PageLimit = Type.Integer({ minimum: 1, maximum: PAGE_SIZE_CEILING });

/** Free text with the service's default length cap. */
export const Text = (maxLength = 1024) => Type.String({ maxLength });

export const Problem = Type.Object(
  {
    type: Type.String(),
    title: Type.String(),
    status: Type.Integer(),
    code: Type.String(),
    detail: Type.Optional(Type.String()),
    errors: Type.Optional(Type.Array(Type.Object({}, { additionalProperties: true }))),
  },
  { additionalProperties: true },
);

/** `Idempotency-Key` (SPEC §7.1): 1 to 255 printable ASCII characters. */
export const IdempotencyKey = Type.String({
  minLength: 1,
  maxLength: 255,
  pattern: '^[\\x20-\\x7E]+$',
  description:
    'Executes the POST once per tenant and key: a retry within 24 h gets the first 2xx answer again (with Idempotent-Replayed: true); the same key with another request is a 422 idempotency_key_reused',
});

/** The headers of a POST that takes an `Idempotency-Key`. */
export const IdempotencyHeaders = Type.Object({ 'idempotency-key': Type.Optional(IdempotencyKey) });

/** The problem responses a route may answer with, by status. */
export function problems(...statuses: readonly number[]): Record<number, typeof Problem> {
  return Object.fromEntries(statuses.map((s) => [s, Problem]));
}

// ---------------------------------------------------------------------------------------
// camelCase (core) <-> snake_case (wire)

type SnakeChar<C extends string> = C extends Lowercase<C> ? C : `_${Lowercase<C>}`;
export type SnakeCase<S extends string> = S extends `${infer H}${infer T}` ? `${SnakeChar<H>}${SnakeCase<T>}` : S;
export type CamelCase<S extends string> = S extends `${infer H}_${infer T}` ? `${H}${Capitalize<CamelCase<T>>}` : S;

export type SnakeCased<T> = { [K in keyof T as K extends string ? SnakeCase<K> : K]: T[K] };
export type CamelCased<T> = { [K in keyof T as K extends string ? CamelCase<K> : K]: T[K] };

const snakeNames = new Map<string, string>();
const camelNames = new Map<string, string>();

export function snakeCase(name: string): string {
  let snake = snakeNames.get(name);
  if (snake === undefined) {
    snake = name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
    snakeNames.set(name, snake);
  }
  return snake;
}

export function camelCase(name: string): string {
  let camel = camelNames.get(name);
  if (camel === undefined) {
    camel = name.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
    camelNames.set(name, camel);
  }
  return camel;
}

/** A model object with its field names in snake_case (values as they are). */
export function toSnake<T extends object>(value: T): SnakeCased<T> {
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value)) out[snakeCase(key)] = v;
  return out as SnakeCased<T>;
}

/** A validated request body with its field names in camelCase; absent (undefined) fields are left out. */
export function toCamel<T extends object>(body: T): CamelCased<T> {
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(body)) if (v !== undefined) out[camelCase(key)] = v;
  return out as CamelCased<T>;
}

/** Compile-time proof that two types are the same (used to tie schemas to core types). */
export type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
export function assertSame<_T extends true>(): void {}
