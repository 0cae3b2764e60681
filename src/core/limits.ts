import { CapacityError, LimitError } from './errors.js';
import { checkJsonValue, DEFAULT_JSON_SHAPE } from './json-shape.js';

/** Size and count limits the service enforces for library and HTTP callers alike. */
export interface Limits {
  /** Largest metadata object, in bytes of JSON. */
  metadataBytes: number;
  /** Largest item content, in bytes of JSON. */
  itemBytes: number;
  /** Most items in one append. */
  itemsPerAppend: number;
  /** Largest page of a list. */
  maxPageSize: number;
  /** Default page of a list. */
  defaultPageSize: number;
  /** Most ids in one batch call. */
  batchSize: number;
  /** Longest free-text field (title, model, reason, ...). */
  textLength: number;
  /** Longest system prompt. */
  systemPromptLength: number;
  /** Largest run output event, in bytes of JSON (its data). */
  outputEventBytes: number;
  /** Most runs waiting in one session's queue (ifBusy: 'enqueue'). */
  runsQueuedPerSession: number;
  /** Most SSE connections one API key may hold open at once. */
  sseConnectionsPerKey: number;
  /** Deepest nesting of objects and arrays in a JSON body or value (400 json_too_deep). */
  jsonDepth: number;
  /** Most nodes (values and member names) in a JSON body or value (400 json_too_large). */
  jsonNodes: number;
}

/** The largest MAX_PAGE_SIZE one may configure; the HTTP schemas allow up to this, the service the configured one. */
export const PAGE_SIZE_CEILING = 1_000;

/** Longest search of a session list (`q`): an id or a part of a title. */
export const MAX_SEARCH_LENGTH = 256;

/** Longest client id of an item (`client_id`): room for any framework's message id. */
export const MAX_ITEM_CLIENT_ID = 256;

export const DEFAULT_LIMITS: Limits = Object.freeze({
  metadataBytes: 16 * 1024,
  itemBytes: 256 * 1024,
  itemsPerAppend: 100,
  maxPageSize: 100,
  defaultPageSize: 20,
  batchSize: 100,
  textLength: 1024,
  systemPromptLength: 64 * 1024,
  outputEventBytes: 64 * 1024,
  runsQueuedPerSession: 10,
  sseConnectionsPerKey: 20,
  jsonDepth: DEFAULT_JSON_SHAPE.depth,
  jsonNodes: DEFAULT_JSON_SHAPE.nodes,
});

export function jsonBytes(value: unknown): number {
  return Buffer.byteLength(JSON.stringify(value) ?? '', 'utf8');
}

/**
 * Refuses an output event whose data is larger than `limits.outputEventBytes` (413
 * limit_exceeded), nests deeper or has more nodes than JSON allows here, or holds a number
 * JSON cannot carry (400). Returns the data's JSON text (the writer keeps it, so the event is serialized once).
 */
export function checkOutputEvent(
  limits: Pick<Limits, 'outputEventBytes'> & Partial<Pick<Limits, 'jsonDepth' | 'jsonNodes'>>,
  data: unknown,
): string {
  checkJsonValue(data, { depth: limits.jsonDepth ?? DEFAULT_JSON_SHAPE.depth, nodes: limits.jsonNodes ?? DEFAULT_JSON_SHAPE.nodes }, 'data');
  const json = JSON.stringify(data) ?? 'null';
  const bytes = Buffer.byteLength(json, 'utf8');
  if (bytes > limits.outputEventBytes) {
    throw new LimitError(`output event exceeds ${limits.outputEventBytes} bytes`, {
      field: 'data',
      limit: limits.outputEventBytes,
      size: bytes,
    });
  }
  return json;
}

/**
 * Refuses one more queued run when `queued` runs already wait in the session (429
 * queue_full): a client retrying later is right, the request itself is not wrong.
 */
export function checkRunsQueued(limits: Pick<Limits, 'runsQueuedPerSession'>, queued: number): void {
  if (queued >= limits.runsQueuedPerSession) {
    throw new CapacityError('queue_full', `at most ${limits.runsQueuedPerSession} runs may wait in one session`, {
      details: { limit: limits.runsQueuedPerSession },
    });
  }
}
