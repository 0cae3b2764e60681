/**
 * A Server-Sent Events parser over a fetch response body: `id:`, `event:`, `data:` (several
 * joined with newlines) and `retry:` fields, comment lines skipped, frames ended by a blank
 * line; CRLF, LF and CR line ends.
 */

export interface SseMessage {
  /** The frame's `id:`, if it had one. */
  id: string | undefined;
  /** The frame's `event:`, or `message`. */
  event: string;
  data: string;
  /** A `retry:` the frame carried (reconnect delay in ms). */
  retry: number | undefined;
}

export interface SseControl {
  /** A `retry:` field, as soon as it is read (it need not come with data). */
  onRetry?: (ms: number) => void;
  /** The `id:` of a frame without data: not an event, but the last event id all the same. */
  onId?: (id: string) => void;
  /** Anything arrived (an event, a comment such as a heartbeat): the connection is alive. */
  onActivity?: () => void;
}

/** Yields the frames that carry data (as the SSE spec dispatches events); see SseControl for the rest. */
export async function* parseSse(body: ReadableStream<Uint8Array>, control: SseControl = {}): AsyncGenerator<SseMessage, void, undefined> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let id: string | undefined;
  let event: string | undefined;
  let data: string[] = [];
  let retry: number | undefined;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (!done) control.onActivity?.();
      buffer += done ? decoder.decode() : decoder.decode(value, { stream: true });
      for (;;) {
        const end = lineEnd(buffer, done);
        if (end === null) break;
        const line = buffer.slice(0, end.at);
        buffer = buffer.slice(end.at + end.length);
        if (line === '') {
          if (data.length > 0) {
            yield { id, event: event ?? 'message', data: data.join('\n'), retry };
          } else if (id !== undefined) {
            control.onId?.(id);
          }
          id = undefined;
          event = undefined;
          data = [];
          retry = undefined;
          continue;
        }
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'data') data.push(text);
        else if (field === 'id') id = text;
        else if (field === 'event') event = text;
        else if (field === 'retry' && /^\d+$/.test(text)) {
          retry = Number(text);
          control.onRetry?.(retry);
        }
      }
      if (done) return;
    }
  } finally {
    // Leaving the loop early (break, error) releases the connection.
    await reader.cancel().catch(() => undefined);
  }
}

/** Where the first complete line of `buffer` ends, or null when it needs more input. */
function lineEnd(buffer: string, done: boolean): { at: number; length: number } | null {
  const lf = buffer.indexOf('\n');
  const cr = buffer.indexOf('\r');
  if (cr < 0 || (lf >= 0 && lf < cr)) return lf < 0 ? null : { at: lf, length: 1 };
  // A CR at the end of a chunk may be the first half of a CRLF.
  if (cr + 1 === buffer.length && !done) return null;
  return { at: cr, length: buffer[cr + 1] === '\n' ? 2 : 1 };
}
