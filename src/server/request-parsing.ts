/**
 * The edge below the routes, where bad input must still leave as problem+json: the JSON body
 * parser (shape and number checks before `JSON.parse`), errors Node's HTTP parser raises
 * before Fastify sees a request, a request without Host, and `Expect` (the rest of a body
 * that is too large is read and dropped in errors.ts, where its 413 is sent).
 */
import { isUtf8 } from 'node:buffer';
import { STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { AgentSessionsError } from '../core/errors.js';
import { checkJsonText, type JsonShapeLimits } from '../core/json-shape.js';
import { problem, type ProblemBody } from '../api/errors.js';
import { sendProblem } from './errors.js';

/**
 * Replaces Fastify's JSON parser with the same parser (prototype-poisoning checks included)
 * behind one linear scan of the text: `json_too_deep`, `json_too_large` and
 * `number_out_of_range` are answered before anything parses, walks or stores the body.
 */
export function registerJsonParser(app: FastifyInstance, shape: JsonShapeLimits): void {
  const parse = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body, done) => {
    const bytes = body as Buffer;
    // Decoding would replace bytes that are not UTF-8 with U+FFFD: a change, so a refusal.
    if (!isUtf8(bytes)) {
      done(new AgentSessionsError('invalid_unicode', 'the body is not UTF-8'), undefined);
      return;
    }
    const text = bytes.toString('utf8');
    try {
      checkJsonText(text, shape);
    } catch (err) {
      done(err as Error, undefined);
      return;
    }
    parse(request, text, done);
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
      return sendProblem(reply, problem('malformed_request', 'an HTTP/1.1 request needs a Host header'));
    }
  });
}

/** Sockets already answered after a parser error; the parser repeats its error for each further chunk. */
const answered = new WeakSet<Socket>();

/** How long a socket answered after a parser error may stay open for the client to read the answer. */
const LINGER_MS = 2_000;

/**
 * Fastify's `clientErrorHandler`: an error Node's HTTP parser raised (a header or URL too
 * long, a bad method or header name, a folded header, broken framing, a timeout) leaves as
 * problem+json, then the connection closes. Installed in place of Fastify's, which answers
 * plain JSON. An answer to an earlier request on the connection (pipelined) is written whole
 * first, so the error's answer is never taken for that request's.
 */
export function clientErrorHandler(this: FastifyInstance, err: Error & { code?: string }, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed || answered.has(socket)) return;
  answered.add(socket);
  this.log.debug({ err: { code: err.code, message: err.message } }, 'client error');
  const body = clientErrorProblem(err);
  const answer = (): void => {
    if (socket.destroyed) return;
    const inFlight = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
    if (inFlight && !inFlight.writableFinished) {
      if (inFlight.req.complete) {
        // An earlier request's answer is on its way: the error belongs to the next one.
        inFlight.once('close', answer);
        return;
      }
      // The error is in this request's own body: the error's answer is its answer, unless its
      // own has begun (then the connection can only be closed).
      if (inFlight.headersSent) {
        socket.destroy();
        return;
      }
    }
    if (!socket.writable) {
      socket.destroy();
      return;
    }
    const json = JSON.stringify(body);
    socket.end(
      `HTTP/1.1 ${body.status} ${STATUS_CODES[body.status] ?? 'Error'}\r\n` +
        'Content-Type: application/problem+json\r\n' +
        `Content-Length: ${Buffer.byteLength(json)}\r\n` +
        'Connection: close\r\n\r\n' +
        json,
    );
    // Whatever the client still sends is read and dropped until it closes its side (closing
    // with unread bytes would reset the connection and could lose the answer), for a bounded time.
    socket.resume();
    socket.once('end', () => socket.destroy());
    setTimeout(() => socket.destroy(), LINGER_MS).unref();
  };
  answer();
}

/**
 * `Expect: 100-continue` (curl sends it for bodies over 1 MiB): a body declared larger than
 * the limit is refused with the 413 before the client sends it, instead of Node inviting it
 * with a 100; any other expectation is a 417. Both as problem+json.
 */
export function registerExpectations(app: FastifyInstance, bodyLimit: number): void {
  const server = app.server as Server;
  const refuse = (res: ServerResponse, body: ProblemBody) => {
    const json = JSON.stringify(body);
    res.writeHead(body.status, {
      'content-type': 'application/problem+json; charset=utf-8',
      'content-length': Buffer.byteLength(json),
      connection: 'close',
    });
    res.end(json);
  };
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    if (Number(req.headers['content-length']) > bodyLimit) {
      refuse(res, problem('payload_too_large', `the body is larger than ${bodyLimit} bytes`));
      return;
    }
    res.writeContinue();
    server.emit('request', req, res);
  });
  server.on('checkExpectation', (_req: IncomingMessage, res: ServerResponse) => {
    refuse(res, problem('expectation_failed', 'the only expectation this server meets is 100-continue'));
  });
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
