/**
 * `agent-sessions erase --user U --tenant T` and `erase --tenant T --yes` as data, like the
 * keys commands (key-commands.ts): run by the CLI on the database it opened, or sent to the
 * server that holds the embedded data directory through its control socket.
 */
import type { Erasure } from '../core/erasure.js';
import { ValidationError } from '../core/errors.js';
import type { ControlRequest } from '../adapters/postgres/directory-lock.js';
import { erasedJson, type ErasedJson } from '../api/erasure.js';

export const ERASE_OPERATIONS = ['erase.user', 'erase.tenant'] as const;

export type EraseRequest = { op: 'erase.user'; tenant: string; userId: string } | { op: 'erase.tenant'; tenant: string };

/** Checks a request that came over the control socket (the erasure checks the values). */
export function parseEraseRequest(raw: ControlRequest): EraseRequest {
  const str = (v: unknown) => (typeof v === 'string' ? v : '');
  switch (raw.op) {
    case 'erase.user':
      return { op: raw.op, tenant: str(raw.tenant), userId: str(raw.userId) };
    case 'erase.tenant':
      return { op: raw.op, tenant: str(raw.tenant) };
    default:
      throw new ValidationError(`unknown operation ${raw.op}`);
  }
}

/** The rows deleted, as the HTTP API answers them. */
export async function runEraseRequest(erasure: Erasure, request: EraseRequest): Promise<ErasedJson> {
  const result =
    request.op === 'erase.user' ? await erasure.eraseUser(request.tenant, request.userId) : await erasure.eraseTenant(request.tenant);
  return erasedJson(result);
}
