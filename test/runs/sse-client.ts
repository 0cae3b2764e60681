/**
 * A small Server-Sent Events reader over fetch for tests: parses `id:`/`event:`/`data:`
 * frames and comment lines, and can stop after N events (cutting the connection).
 */
export interface SseEvent {
  id: string | undefined;
  event: string;
  data: unknown;
  /** When the frame arrived (ms, performance.timeOrigin-based wall clock). */
  at: number;
}

export interface ReadSseOptions {
  headers?: Record<string, string>;
  /** Stop (and close the connection) after this many events. */
  maxEvents?: number;
  signal?: AbortSignal;
  onEvent?: (e: SseEvent) => void;
  /** Give up after this long (default 60 s). */
  timeoutMs?: number;
}

export interface SseResult {
  status: number;
  events: SseEvent[];
  comments: string[];
  /** True when the server closed the stream (rather than us cutting it). */
  ended: boolean;
}

export async function readSse(url: string, options: ReadSseOptions = {}): Promise<SseResult> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new Error(`SSE read of ${url} timed out`)), options.timeoutMs ?? 60_000);
  options.signal?.addEventListener('abort', () => controller.abort(options.signal?.reason), { once: true });
  const events: SseEvent[] = [];
  const comments: string[] = [];
  try {
    const res = await fetch(url, { headers: { accept: 'text/event-stream', ...options.headers }, signal: controller.signal });
    if (!res.ok || !res.body) return { status: res.status, events, comments, ended: true };
    const decoder = new TextDecoder();
    let buffer = '';
    let frame: { id?: string; event?: string; data: string[] } = { data: [] };
    const reader = res.body.getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return { status: res.status, events, comments, ended: true };
      buffer += decoder.decode(value, { stream: true });
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl).replace(/\r$/, '');
        buffer = buffer.slice(nl + 1);
        if (line === '') {
          if (frame.data.length > 0) {
            const e: SseEvent = {
              id: frame.id,
              event: frame.event ?? 'message',
              data: JSON.parse(frame.data.join('\n')),
              at: performance.timeOrigin + performance.now(),
            };
            events.push(e);
            options.onEvent?.(e);
            if (options.maxEvents !== undefined && events.length >= options.maxEvents) {
              controller.abort();
              return { status: res.status, events, comments, ended: false };
            }
          }
          frame = { data: [] };
        } else if (line.startsWith(':')) {
          comments.push(line.slice(1));
        } else {
          const i = line.indexOf(':');
          const field = i < 0 ? line : line.slice(0, i);
          const value = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
          if (field === 'id') frame.id = value;
          else if (field === 'event') frame.event = value;
          else if (field === 'data') frame.data.push(value);
        }
      }
    }
  } finally {
    clearTimeout(timer);
  }
}
