/**
 * What the HTTP client throws for an answer that is not a success: the server's
 * problem+json (status, stable `code`, title, detail) as an error object.
 */
import { isRetryableStatus, type ProblemBody as ProblemJson, type ProblemCode } from '../api/errors.js';

export interface HttpErrorInit {
  status: number;
  method: string;
  url: string;
  /** The problem+json body, or null when the answer was not one (a proxy's HTML page). */
  problem: (ProblemJson & Record<string, unknown>) | null;
  /** Retry-After in seconds (429 and 503), when the server sent one. */
  retryAfter?: number | undefined;
}

export class AgentSessionsHttpError extends Error {
  override name = 'AgentSessionsHttpError';
  readonly status: number;
  /** The server's stable code (`version_conflict`, `session_not_found`, ...), or `http_<status>` without a problem body. */
  readonly code: ProblemCode | `http_${number}` | (string & {});
  readonly title: string;
  readonly detail: string | undefined;
  /** Extra facts the server attached (e.g. `currentRevision` of a `version_conflict`). */
  readonly details: Record<string, unknown> | undefined;
  /** Seconds to wait before retrying, from Retry-After (429, 503). */
  readonly retryAfter: number | undefined;
  readonly method: string;
  readonly url: string;
  readonly problem: (ProblemJson & Record<string, unknown>) | null;

  constructor(init: HttpErrorInit) {
    const p = init.problem;
    const code = p?.code ?? `http_${init.status}`;
    super(`${init.method} ${init.url}: ${init.status} ${code}${p?.detail ? `: ${p.detail}` : ''}`);
    this.status = init.status;
    this.code = code;
    this.title = p?.title ?? `HTTP ${init.status}`;
    this.detail = p?.detail;
    const details = p?.details;
    this.details = typeof details === 'object' && details !== null ? (details as Record<string, unknown>) : undefined;
    this.retryAfter = init.retryAfter;
    this.method = init.method;
    this.url = init.url;
    this.problem = p;
  }

  /** A dependency outage (503) or a limit (429): the same request may succeed later. */
  get retryable(): boolean {
    return isRetryableStatus(this.status);
  }
}

export function isAgentSessionsHttpError(err: unknown): err is AgentSessionsHttpError {
  return err instanceof AgentSessionsHttpError;
}

/** Retry-After as seconds: delta-seconds or an HTTP date. */
export function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (value === null || value.trim() === '') return undefined;
  if (/^\s*\d+\s*$/.test(value)) return Number(value);
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, Math.ceil((at - now) / 1000));
}
