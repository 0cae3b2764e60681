/** Opaque keyset cursors: base64url JSON, validated on the way back in. */
import { AgentSessionsError } from './errors.js';

export function encodeCursor(value: unknown): string {
  return Buffer.from(JSON.stringify(value), 'utf8').toString('base64url');
}

export function decodeCursor<T>(cursor: string, isValid: (v: unknown) => v is T): T {
  let value: unknown;
  try {
    if (!/^[A-Za-z0-9_-]{1,512}$/.test(cursor)) throw new Error('not base64url');
    value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw new AgentSessionsError('invalid_cursor', 'cursor is not one this service issued');
  }
  if (!isValid(value)) throw new AgentSessionsError('invalid_cursor', 'cursor is not one this service issued');
  return value;
}
