/** The session model and its rules (SPEC §5). No I/O here. */

export const SESSION_STATUSES = [
  'initializing',
  'active',
  'idle',
  'waiting_input',
  'terminated',
  'failed',
  'expired',
] as const;
export type SessionStatus = (typeof SESSION_STATUSES)[number];

/** Statuses after which a session takes no more writes (only terminate and purge). */
export const ENDED_STATUSES: readonly SessionStatus[] = ['terminated', 'failed', 'expired'];

const TRANSITIONS: Record<SessionStatus, readonly SessionStatus[]> = {
  initializing: ['initializing', 'active', 'idle', 'waiting_input', 'terminated', 'failed'],
  active: ['active', 'idle', 'waiting_input', 'terminated', 'failed'],
  idle: ['idle', 'active', 'waiting_input', 'terminated', 'failed', 'expired'],
  waiting_input: ['waiting_input', 'active', 'idle', 'terminated', 'failed', 'expired'],
  terminated: [],
  failed: ['terminated'],
  expired: ['terminated'],
};

export function canTransition(from: SessionStatus, to: SessionStatus): boolean {
  return TRANSITIONS[from].includes(to);
}

/** Every status from which `to` may be reached; used to make status changes atomic in SQL. */
export function statusesLeadingTo(to: SessionStatus): SessionStatus[] {
  return SESSION_STATUSES.filter((from) => canTransition(from, to));
}

export interface SessionCounters {
  totalTurns: number;
  messageCount: number;
  totalCostUsd: number;
  inputTokens: number;
  outputTokens: number;
}
export type CounterName = keyof SessionCounters;
export const COUNTER_NAMES: readonly CounterName[] = [
  'totalTurns',
  'messageCount',
  'totalCostUsd',
  'inputTokens',
  'outputTokens',
];

export type Metadata = Record<string, unknown>;

export interface Session extends SessionCounters {
  id: string;
  tenantId: string;
  userId: string | null;
  orgId: string | null;
  status: SessionStatus;
  model: string | null;
  title: string | null;
  systemPrompt: string | null;
  workspacePath: string | null;
  mcpClientIds: string[];
  parentSessionId: string | null;
  metadata: Metadata;
  /** +1 on every write; orders cache entries. */
  version: number;
  /**
   * +1 only on writes to the fields a client sets (update, terminate); item appends, counters,
   * touches and run-driven status changes leave it alone. The ETag and `expectedRevision` compare it.
   */
  revision: number;
  ttlSeconds: number | null;
  idleTimeoutSeconds: number | null;
  createdAt: string;
  updatedAt: string;
  lastActiveAt: string;
  expiresAt: string | null;
  endedAt: string | null;
  endReason: string | null;
}

/** The statuses a session may be created in. */
export const CREATE_STATUSES = ['initializing', 'idle'] as const satisfies readonly SessionStatus[];

export interface CreateSessionInput {
  id?: string;
  userId?: string | null;
  orgId?: string | null;
  status?: (typeof CREATE_STATUSES)[number];
  model?: string | null;
  title?: string | null;
  systemPrompt?: string | null;
  workspacePath?: string | null;
  mcpClientIds?: string[];
  parentSessionId?: string | null;
  metadata?: Metadata;
  ttlSeconds?: number | null;
  idleTimeoutSeconds?: number | null;
}

export interface UpdateSessionInput {
  status?: SessionStatus;
  model?: string | null;
  title?: string | null;
  systemPrompt?: string | null;
  workspacePath?: string | null;
  mcpClientIds?: string[];
  /** Shallow merge into the stored metadata; a key set to null is removed. */
  metadata?: Metadata;
  idleTimeoutSeconds?: number | null;
}

export interface ListSessionsFilter {
  userId?: string;
  status?: SessionStatus;
  updatedAfter?: string;
  /** Only sessions whose id starts with this or whose title contains it (case-insensitive); empty: any. */
  search?: string;
  cursor?: string;
  limit?: number;
}

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

export interface SessionItem {
  id: string;
  sessionId: string;
  seq: number;
  /** The caller's own id for the item (unique in the session); null when it gave none. */
  clientId: string | null;
  /** null for items that have none (an OpenAI Agents function_call, function_call_result, reasoning). */
  role: string | null;
  type: string;
  content: unknown;
  createdAt: string;
}

/** The type of an item appended without one. */
export const DEFAULT_ITEM_TYPE = 'message';

export interface NewItem {
  /**
   * The caller's own id for the item, 1–256 characters, unique in the session. Appending an
   * item whose clientId is stored answers the stored item when role, type and content are the
   * same (nothing is written), and replaces it in place (same seq) when they are not.
   */
  clientId?: string;
  role?: string | null;
  /** Default `message`. */
  type?: string;
  content: unknown;
}

export interface ListItemsQuery {
  cursor?: string;
  limit?: number;
  /** The last N turns; a turn starts at a user message, so tool calls stay with their results. */
  lastTurns?: number;
  /**
   * `asc` (default): oldest first. `desc`: newest first, so `{ order: 'desc', limit: N }` is
   * the latest N items (reverse the page for them in chronological order). A cursor continues
   * in the order it was issued for.
   */
  order?: ItemOrder;
}

export const ITEM_ORDERS = ['asc', 'desc'] as const;
export type ItemOrder = (typeof ITEM_ORDERS)[number];

/** Options every call accepts. */
export interface CallOptions {
  tenant?: string;
  signal?: AbortSignal;
}

/** For the writes that take one (`create`, `touch`, `incrementCounters`, `fork`, `deleteMany`, `items.append`). */
export interface IdempotencyOptions {
  /**
   * Executes the call once per tenant and key: a repeat within 24 h (a retry after an unknown
   * outcome, on any instance) resolves to the first call's result and changes nothing; the
   * same key with other arguments fails with `idempotency_key_reused`. 1 to 255 printable
   * ASCII characters. The same keys as the HTTP API's `Idempotency-Key` (docs/runs.md).
   */
  idempotencyKey?: string;
}

export interface WriteOptions extends CallOptions {
  /**
   * Fails with `version_conflict` unless the session's revision equals this (the HTTP API's
   * `If-Match: "<revision>"`). Appends, counters and touches do not change the revision.
   */
  expectedRevision?: number;
  /** A token from `withSessionLock`; a write with a token older than the newest is rejected. */
  fencingToken?: number;
}

export const DEFAULT_TENANT = 'default';

/** What an API key may do. */
export const SCOPES = ['read', 'write', 'runs', 'admin'] as const;
export type Scope = (typeof SCOPES)[number];

/** Tenant names: letters, digits and _ . - (1 to 64), as the CLI and the admin API accept them. */
export const TENANT_PATTERN = '^[\\w.-]{1,64}$';
export const TENANT_RE = new RegExp(TENANT_PATTERN);

/**
 * Session ids: chosen by the client or, when not, a UUIDv7 by the server (SPEC §10). Unique
 * per tenant: two tenants may hold the same id without learning of each other.
 */
export const SESSION_ID_PATTERN = '^[A-Za-z0-9_:-][A-Za-z0-9._:-]{0,127}$';

/**
 * The status a reader must see: a session past its expiry or idle deadline is expired even
 * before the sweeper has written that down, so an expired session is never served as live.
 */
export function effectiveStatus(s: Session, now: number = Date.now()): SessionStatus {
  if (ENDED_STATUSES.includes(s.status)) return s.status;
  if (s.expiresAt !== null && reached(s.expiresAt, now)) return 'expired';
  // A running agent may be quiet for long (a slow tool call); it is not idle.
  if (s.status !== 'active' && s.idleTimeoutSeconds !== null && reached(s.lastActiveAt, now - s.idleTimeoutSeconds * 1000)) {
    return 'expired';
  }
  return s.status;
}

/**
 * Whether the timestamp `iso` is at or before the instant `ms`. Every read checks two
 * deadlines, so this must be cheap. Timestamps as this package writes them
 * (`toISOString`: "YYYY-MM-DDTHH:mm:ss.sssZ") order as text, and are compared with `ms`
 * written the same way, which is remembered for the last two instants asked (within a
 * millisecond, reads of sessions with one idle timeout ask the same two: now, and now less
 * that timeout; sessions with several timeouts format an instant more often). Other text is
 * parsed.
 */
function reached(iso: string, ms: number): boolean {
  if (iso.length === 24 && iso.charCodeAt(23) === 90 /* Z */ && iso.charCodeAt(10) === 84 /* T */ && ms >= 0 && ms <= LAST_FOUR_DIGIT_YEAR_MS) {
    return iso <= isoOf(ms);
  }
  return timeOf(iso) <= ms;
}

/** 9999-12-31T23:59:59.999Z: later instants are written with a six-digit year, which does not order as text. */
const LAST_FOUR_DIGIT_YEAR_MS = 253_402_300_799_999;

let isoMs1 = Number.NaN;
let iso1 = '';
let isoMs2 = Number.NaN;
let iso2 = '';
let writeFirst = true;
function isoOf(ms: number): string {
  if (ms === isoMs1) return iso1;
  if (ms === isoMs2) return iso2;
  // The slot written longer ago takes it.
  const text = new Date(ms).toISOString();
  if (writeFirst) {
    isoMs1 = ms;
    iso1 = text;
  } else {
    isoMs2 = ms;
    iso2 = text;
  }
  writeFirst = !writeFirst;
  return text;
}

/**
 * `Date.parse` of a timestamp not in the form above, remembered by its text; bounded.
 */
const parsedTimes = new Map<string, number>();
function timeOf(iso: string): number {
  let t = parsedTimes.get(iso);
  if (t === undefined) {
    t = Date.parse(iso);
    if (parsedTimes.size >= 4096) parsedTimes.clear();
    parsedTimes.set(iso, t);
  }
  return t;
}

export function withEffectiveStatus(s: Session, now: number = Date.now()): Session {
  const status = effectiveStatus(s, now);
  return status === s.status ? s : { ...s, status };
}
