/**
 * The edge below the routes, where bad input must still leave as problem+json: the JSON body
 * parser (shape and number checks before `JSON.parse`), errors Node's HTTP parser raises
 * before Fastify sees a request, a request without Host, and the rest of a body that is
 * too large (read and dropped, so that the client sees the 413 instead of a reset).
 */
import { STATUS_CODES, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { checkJsonText, type JsonShapeLimits } from '../core/json-shape.js';
import { problem, type ProblemBody } from '../api/errors.js';

/**
 * Replaces Fastify's JSON parser with the same parser (prototype-poisoning checks included)
 * behind one linear scan of the text: `json_too_deep`, `json_too_large` and
 * `number_out_of_range` are answered before anything parses, walks or stores the body.
 */
export function registerJsonParser(app: FastifyInstance, shape: JsonShapeLimits): void {
  const parse = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    try {
      checkJsonText(body as string, shape);
    } catch (err) {
      done(err as Error, undefined);
      return;
    }
    parse(request, body as string, done);
  });
}

/**
 * HTTP/1.1 requires Host (RFC 9112 §3.2). Node answers its absence with a bare 400 before
 * Fastify runs; the server turns that check off (`requireHostHeader: false`) and makes it
 * here, so that the 400 is a problem like every other.
 */
export function registerHostCheck(app: FastifyInstance): void {
  app.addHook('onRequest', async (request, reply) => {
    const raw = request.raw;
    if (raw.httpVersionMajor === 1 && raw.httpVersionMinor >= 1 && raw.headers.host === undefined) {
      const body = problem('malformed_request', 'an HTTP/1.1 request needs a Host header');
      return reply.status(body.status).type('application/problem+json').send(body);
    }
  });
}

/** The most bytes of a too-large body read and dropped after its 413 before the connection is cut. */
export const DRAIN_LIMIT_BYTES = 16 * 1024 * 1024;

/**
 * After a 413 for a body still arriving: keep the connection and read the rest of the body
 * (up to `DRAIN_LIMIT_BYTES`, then the connection is cut), so that the client, still
 * sending, reads the answer instead of a reset. Fastify marks such answers
 * `Connection: close`, which closes the socket under the client's feet; removed here.
 */
export function drainRejectedBody(request: FastifyRequest, reply: FastifyReply): void {
  const raw = request.raw;
  if (raw.complete || raw.destroyed) return;
  reply.removeHeader('connection');
  let drained = 0;
  const onData = (chunk: Buffer) => {
    drained += chunk.length;
    if (drained > DRAIN_LIMIT_BYTES) {
      raw.off('data', onData);
      raw.socket?.destroy();
    }
  };
  raw.on('data', onData);
  raw.once('end', () => raw.off('data', onData));
  raw.resume();
}

/** Sockets already answered after a parser error; the parser repeats its error for each further chunk. */
const answered = new WeakSet<Socket>();

/** How long a socket answered after a parser error may stay open for the client to read the answer. */
const LINGER_MS = 2_000;

/**
 * Fastify's `clientErrorHandler`: an error Node's HTTP parser raised (a header or URL too
 * long, a bad method or header name, a folded header, broken framing, a timeout) leaves as
 * problem+json when the socket can still carry an answer (no answer on it has started),
 * then the connection closes. Installed in place of Fastify's, which answers plain JSON.
 */
export function clientErrorHandler(this: FastifyInstance, err: Error & { code?: string }, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed || answered.has(socket)) return;
  answered.add(socket);
  const inFlight = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
  if (!socket.writable || (inFlight && inFlight.headersSent)) {
    socket.destroy();
    return;
  }
  const body = clientErrorProblem(err);
  this.log.debug({ err: { code: err.code, message: err.message } }, 'client error');
  const json = JSON.stringify(body);
  socket.end(
    `HTTP/1.1 ${body.status} ${STATUS_CODES[body.status] ?? 'Error'}\r\n` +
      'Content-Type: application/problem+json\r\n' +
      `Content-Length: ${Buffer.byteLength(json)}\r\n` +
      'Connection: close\r\n\r\n' +
      json,
  );
  // Whatever the client still sends is read and dropped until it closes its side (closing with
  // unread bytes would reset the connection and could lose the answer), for a bounded time.
  socket.resume();
  socket.once('end', () => socket.destroy());
  setTimeout(() => socket.destroy(), LINGER_MS).unref();
}

function clientErrorProblem(err: Error & { code?: string }): ProblemBody {
  switch (err.code) {
    case 'HPE_HEADER_OVERFLOW':
      return problem('headers_too_large', 'the request line and headers are larger than the server accepts');
    case 'ERR_HTTP_REQUEST_TIMEOUT':
    case 'ERR_HTTP_HEADERS_TIMEOUT':
      return problem('request_timeout', 'the request did not arrive in time');
    default:
      return problem('malformed_request', `the request is not valid HTTP/1.1 (${err.code ?? 'parse error'})`);
  }
}
