// The API as the console uses it: the key (this tab's sessionStorage only, sent as a header,
// never in a URL), JSON calls with problem+json errors, and Server-Sent Events read with
// fetch() so the key goes in the Authorization header (EventSource cannot send headers).

const KEY = 'agent-sessions-key';
const listeners = new Set();

export function getKey() {
  try {
    return sessionStorage.getItem(KEY) ?? '';
  } catch {
    return '';
  }
}

export function setKey(key) {
  sessionStorage.setItem(KEY, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY);
}

/** Called with a reason ('missing' | 'refused') whenever the key must be asked for again. */
export function onKeyNeeded(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

function keyNeeded(reason) {
  for (const l of listeners) l(reason);
}

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.name = 'ApiError';
    this.status = status;
    this.code = problem?.code ?? null;
  }
}

function headers(extra = {}) {
  const key = getKey();
  return { ...(key ? { authorization: `Bearer ${key}` } : {}), ...extra };
}

/** `api('GET', '/v1/stats')`, `api('POST', path, body)`; rejects with ApiError. */
export async function api(method, path, body, { signal } = {}) {
  const res = await fetch(path, {
    method,
    headers: headers(body === undefined ? {} : { 'content-type': 'application/json' }),
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
    cache: 'no-store',
  });
  if (res.status === 401) keyNeeded('refused');
  if (res.status === 204) return null;
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

/** A query string from an object, leaving out empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : '';
}

const sleep = (ms, signal) =>
  new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });

/**
 * Parses a text/event-stream body into frames `{ id, event, data }` (data as text), calling
 * `onFrame` for each and `onRetry(ms)` for a `retry:` line. Comments (heartbeats) are skipped.
 */
async function readFrames(body, onFrame, onRetry) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let frame = { id: null, event: 'message', data: [] };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let nl;
      while ((nl = buffer.search(/\r\n|\r|\n/)) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + (buffer.startsWith('\r\n', nl) ? 2 : 1));
        if (line === '') {
          if (frame.data.length > 0) onFrame({ id: frame.id, event: frame.event, data: frame.data.join('\n') });
          frame = { id: null, event: 'message', data: [] };
          continue;
        }
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const val = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'data') frame.data.push(val);
        else if (field === 'event') frame.event = val;
        else if (field === 'id' && !val.includes('\0')) frame.id = val;
        else if (field === 'retry' && /^\d+$/.test(val)) onRetry(Number(val));
      }
    }
  } finally {
    reader.releaseLock();
  }
}

/**
 * Follows an SSE endpoint until `signal` aborts or `onEvent` returns true (a terminal event).
 * After a cut connection it reconnects by itself with `Last-Event-ID` = the last id seen, so
 * nothing is missed or repeated. `onState` hears 'connecting' | 'live' | 'reconnecting' |
 * 'ended' | 'error' (with a message). A 401 asks for the key again and stops.
 */
export async function follow(path, { lastEventId = null, onEvent, onState = () => {}, signal }) {
  let last = lastEventId;
  let retryMs = 1000;
  let failures = 0;
  while (!signal?.aborted) {
    onState(failures === 0 ? 'connecting' : 'reconnecting');
    let ended = false;
    try {
      const res = await fetch(path, {
        headers: headers({ accept: 'text/event-stream', ...(last !== null ? { 'last-event-id': String(last) } : {}) }),
        signal,
        cache: 'no-store',
      });
      if (res.status === 401) {
        keyNeeded('refused');
        onState('error', 'the key was refused');
        return;
      }
      if (!res.ok || !res.body) {
        let problem = null;
        try {
          problem = await res.json();
        } catch {
          problem = null;
        }
        const err = new ApiError(res.status, problem);
        // Not found, forbidden, bad request: trying again will not help.
        if (res.status >= 400 && res.status < 500 && res.status !== 429 && res.status !== 408) {
          onState('error', err.message);
          return;
        }
        throw err;
      }
      onState('live');
      failures = 0;
      await readFrames(
        res.body,
        (frame) => {
          if (ended) return;
          if (frame.id !== null) last = frame.id;
          let data;
          try {
            data = JSON.parse(frame.data);
          } catch {
            data = frame.data;
          }
          if (onEvent({ id: frame.id, type: frame.event, data }) === true) ended = true;
        },
        (ms) => (retryMs = Math.min(Math.max(ms, 250), 30_000)),
      );
    } catch (err) {
      if (signal?.aborted) return;
      failures++;
      onState('reconnecting', err instanceof Error ? err.message : String(err));
    }
    if (ended) {
      onState('ended');
      return;
    }
    if (signal?.aborted) return;
    // The server closed or the network failed: back off a little, then resume after `last`.
    failures = Math.max(failures, 1);
    onState('reconnecting');
    await sleep(Math.min(retryMs * failures, 10_000), signal);
  }
}
