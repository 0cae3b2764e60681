import { randomFillSync } from 'node:crypto';
import { SESSION_ID_PATTERN } from './types.js';

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(value: string): boolean {
  return UUID_RE.test(value);
}

const SESSION_ID_RE = new RegExp(SESSION_ID_PATTERN);

export function isSessionId(value: unknown): value is string {
  return typeof value === 'string' && SESSION_ID_RE.test(value);
}

/**
 * The one name of a session outside PostgreSQL (cache entries, Redis keys, output logs,
 * invalidation messages): its tenant and id. Neither may hold a `/` (tenants are letters,
 * digits and `_ . -`), so the name is unambiguous and splits back with `splitSessionKey`.
 */
export function sessionKey(tenant: string, id: string): string {
  return `${tenant}/${id}`;
}

/** The key of a session snapshot (`sessionKey` of its tenant and id). */
export function keyOf(session: { tenantId: string; id: string }): string {
  return sessionKey(session.tenantId, session.id);
}

export function splitSessionKey(key: string): { tenant: string; id: string } | null {
  // The last slash: an id never holds one (a tenant the library was handed might).
  const slash = key.lastIndexOf('/');
  if (slash <= 0 || slash === key.length - 1) return null;
  return { tenant: key.slice(0, slash), id: key.slice(slash + 1) };
}

const MAX_COUNTER = 0xfff;
let lastMs = -Infinity;
let counter = 0;

/**
 * Random bytes drawn from the CSPRNG 4 KiB at a time (as crypto.randomUUID does): a call into
 * it per id cost more than the rest of the id. Each byte is handed out once.
 */
const RANDOM_POOL = Buffer.alloc(4096);
let randomAt = RANDOM_POOL.length;

function randomByteAt(): number {
  if (randomAt >= RANDOM_POOL.length) {
    randomFillSync(RANDOM_POOL);
    randomAt = 0;
  }
  return RANDOM_POOL[randomAt++] as number;
}

/**
 * A UUIDv7 (RFC 9562): time-ordered, so new rows land at the end of the primary key index.
 * Within one process the ids are strictly increasing (RFC 9562 §6.2, method 1: the 12 bits
 * after the version are a counter that starts at a random value below 2^11 each millisecond
 * and counts up within it), so rows ordered by id are in creation order even when several
 * are made in the same millisecond, or when the wall clock steps back.
 */
export function uuidv7(now: number = Date.now()): string {
  if (now > lastMs) {
    lastMs = now;
    counter = ((randomByteAt() << 8) | randomByteAt()) & 0x7ff;
  } else if (++counter > MAX_COUNTER) {
    // The counter ran out in this millisecond (or the clock went back): borrow the next one.
    lastMs++;
    counter = 0;
  }
  const bytes = Buffer.allocUnsafe(16);
  bytes.writeUIntBE(lastMs, 0, 6);
  bytes[6] = 0x70 | (counter >> 8);
  bytes[7] = counter & 0xff;
  for (let i = 8; i < 16; i++) bytes[i] = randomByteAt();
  bytes[8] = 0x80 | ((bytes[8] ?? 0) & 0x3f);
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
