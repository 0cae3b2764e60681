/**
 * One process per embedded data directory (SPEC §18). PGlite does not stop a second process
 * from opening the same files, and two writers corrupt them, so whoever opens a directory
 * first holds a lock that dies with it: a Unix socket listening next to the data files
 * (`<dir>.sock`, mode 0600). The kernel ends the listening socket with the process however
 * it ends, so a socket file nobody accepts on (ECONNREFUSED) is the remains of a killed
 * holder and is taken over; taking over is serialized by an atomic `mkdir`, so two
 * processes that find the same stale socket never both win.
 *
 * The same socket is the control channel: one JSON request per connection, one JSON answer.
 * Every holder answers `hello` (its pid and the operations it accepts); a server adds its
 * admin operations (`agent-sessions keys ...` while `serve` runs). Its file permissions are
 * the credential: only the directory's owner can connect.
 */
import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, rmdirSync, statSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { AgentSessionsError } from '../../core/errors.js';

/** Another live process holds the data directory. */
export class DataDirInUseError extends AgentSessionsError {
  override name = 'DataDirInUseError';
  constructor(
    readonly dataDir: string,
    readonly pid: number | null,
    hint = 'one process at a time may open it',
  ) {
    super('data_dir_in_use', `data directory ${dataDir} is in use by ${pid === null ? 'another process' : `process ${pid}`}; ${hint}`, {
      details: { dataDir, pid },
    });
  }
}

export interface ControlRequest {
  op: string;
  [field: string]: unknown;
}

/** What a holder's control channel answers. */
export type ControlReply = { ok: true; result: unknown } | { ok: false; error: { code: string; message: string } };

export type ControlHandler = (request: ControlRequest) => Promise<unknown>;

/** What `hello` says about a holder. */
export interface HolderInfo {
  pid: number | null;
  /** Operations besides `hello` the holder accepts (a server's admin operations). */
  operations: string[];
}

// sun_path is 108 bytes on Linux and 104 on macOS, the terminating NUL included.
const MAX_SOCKET_PATH = 100;
const HELLO_TIMEOUT_MS = 5_000;
/** A takeover guard older than this was left by a process killed in the middle of one. */
const STALE_GUARD_MS = 10_000;
const MAX_REQUEST_BYTES = 64 * 1024;
const CONNECTION_IDLE_MS = 10_000;

/**
 * The socket that locks `dataDir`: `<dataDir>.sock` beside it, or, when that path is too long
 * for a Unix socket, a name in the temporary directory derived from the directory's path.
 */
export function lockSocketPath(dataDir: string): string {
  const resolved = path.resolve(dataDir);
  const beside = `${resolved}.sock`;
  if (Buffer.byteLength(beside) <= MAX_SOCKET_PATH) return beside;
  return path.join(os.tmpdir(), `agent-sessions-${createHash('sha256').update(resolved).digest('hex').slice(0, 24)}.sock`);
}

type Probe = { state: 'absent' } | { state: 'stale' } | { state: 'live'; holder: HolderInfo };

/** Connects to the socket and asks `hello`: absent (no file), stale (nobody accepts) or live. */
async function probe(socketPath: string): Promise<Probe> {
  try {
    const reply = await exchange(socketPath, { op: 'hello' });
    if (reply.ok) {
      const r = reply.result as { pid?: unknown; operations?: unknown };
      return {
        state: 'live',
        holder: {
          pid: typeof r.pid === 'number' ? r.pid : null,
          operations: Array.isArray(r.operations) ? r.operations.filter((o): o is string => typeof o === 'string') : [],
        },
      };
    }
    return { state: 'live', holder: { pid: null, operations: [] } };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { state: 'absent' };
    if (code === 'ECONNREFUSED') return { state: 'stale' };
    // Connected but no answer in time (a busy holder), or something else in the way: held.
    return { state: 'live', holder: { pid: null, operations: [] } };
  }
}

class ConnectedButSilent extends Error {
  code = 'ETIMEDOUT';
}

/** One request, one answer over the socket. Rejects with the connect error's code when nobody is there. */
function exchange(socketPath: string, request: ControlRequest, timeoutMs = HELLO_TIMEOUT_MS): Promise<ControlReply> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(socketPath);
    let data = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new ConnectedButSilent(`no answer on ${socketPath} within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.setEncoding('utf8');
    socket.once('connect', () => socket.end(`${JSON.stringify(request)}\n`));
    socket.on('data', (chunk: string) => (data += chunk));
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.once('end', () => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(data) as ControlReply);
      } catch {
        reject(new ConnectedButSilent(`unreadable answer on ${socketPath}`));
      }
    });
  });
}

/** Runs `fn` while holding the takeover guard of `socketPath` (an atomic mkdir). */
async function withTakeoverGuard<T>(socketPath: string, fn: () => Promise<T>): Promise<T> {
  const guard = `${socketPath}.takeover`;
  const deadline = Date.now() + STALE_GUARD_MS + 5_000;
  for (;;) {
    try {
      mkdirSync(guard);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      try {
        if (Date.now() - statSync(guard).mtimeMs > STALE_GUARD_MS) rmdirSync(guard);
      } catch {
        // Released meanwhile.
      }
      if (Date.now() > deadline) throw new Error(`could not take ${guard}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  try {
    return await fn();
  } finally {
    try {
      rmdirSync(guard);
    } catch {
      // Gone already.
    }
  }
}

function listen(server: net.Server, socketPath: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      server.off('listening', onListening);
      if (err.code === 'EADDRINUSE') resolve(false);
      else reject(err);
    };
    const onListening = () => {
      server.off('error', onError);
      resolve(true);
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen(socketPath);
  });
}

/** The holder of `dataDir`'s lock, if a live process holds it. */
export async function directoryHolder(dataDir: string): Promise<HolderInfo | null> {
  const found = await probe(lockSocketPath(dataDir));
  return found.state === 'live' ? found.holder : null;
}

/**
 * Sends one control request to the process holding `dataDir`. Resolves to null when no live
 * process holds it; rejects with the holder's error (code and message) when it refused.
 */
export async function controlRequest(dataDir: string, request: ControlRequest, timeoutMs = 30_000): Promise<ControlReply | null> {
  try {
    return await exchange(lockSocketPath(dataDir), request, timeoutMs);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ECONNREFUSED') return null;
    throw err;
  }
}

export class DirectoryLock {
  private handler: { operations: string[]; handle: ControlHandler } | null = null;
  private closing: Promise<void> | null = null;

  private constructor(
    readonly dataDir: string,
    readonly socketPath: string,
    private readonly server: net.Server,
  ) {
    server.on('connection', (socket) => this.answer(socket));
  }

  /** Takes the lock of `dataDir`, or throws `DataDirInUseError` naming the live holder. */
  static async acquire(dataDir: string): Promise<DirectoryLock> {
    const socketPath = lockSocketPath(dataDir);
    mkdirSync(path.dirname(socketPath), { recursive: true });
    for (let attempt = 0; attempt < 5; attempt++) {
      // Half-open: a client ends its side after the request and still reads the answer.
      const server = net.createServer({ allowHalfOpen: true });
      // Plain bind first: it fails if any file is there, so it never displaces anyone.
      if (await listen(server, socketPath)) return DirectoryLock.held(dataDir, socketPath, server);
      const taken = await withTakeoverGuard(socketPath, async () => {
        const found = await probe(socketPath);
        if (found.state === 'live') throw new DataDirInUseError(dataDir, found.holder.pid);
        // Under the guard no other taker unlinks, and nobody can bind while the file is there.
        if (found.state === 'stale') unlinkSync(socketPath);
        return listen(server, socketPath);
      });
      if (taken) return DirectoryLock.held(dataDir, socketPath, server);
      // Someone bound between our unlink and our bind: ask again who it is.
    }
    throw new DataDirInUseError(dataDir, null);
  }

  private static held(dataDir: string, socketPath: string, server: net.Server): DirectoryLock {
    // The credential of the control channel; sockets are created under the umask first.
    chmodSync(socketPath, 0o600);
    // The lock must not keep a process alive that is otherwise done.
    server.unref();
    return new DirectoryLock(dataDir, socketPath, server);
  }

  /** Accepts `operations` on the control channel, answered by `handle`. */
  serve(operations: readonly string[], handle: ControlHandler): void {
    this.handler = { operations: [...operations], handle };
  }

  private answer(socket: net.Socket): void {
    let data = '';
    socket.setEncoding('utf8');
    socket.on('error', () => undefined);
    // A client that never finishes its request must not keep close() waiting.
    socket.setTimeout(CONNECTION_IDLE_MS, () => socket.destroy());
    const reply = (body: ControlReply) => socket.end(`${JSON.stringify(body)}\n`);
    socket.on('data', (chunk: string) => {
      data += chunk;
      if (data.length > MAX_REQUEST_BYTES) socket.destroy();
    });
    socket.once('end', () => {
      // The request is complete: the idle limit was for it, not for the work (an export takes long).
      socket.setTimeout(0);
      void (async () => {
        let request: ControlRequest;
        try {
          request = JSON.parse(data) as ControlRequest;
          if (typeof request?.op !== 'string') throw new Error('no op');
        } catch {
          return reply({ ok: false, error: { code: 'bad_request', message: 'one JSON object with an "op" per connection' } });
        }
        if (request.op === 'hello') {
          return reply({ ok: true, result: { pid: process.pid, operations: this.handler?.operations ?? [] } });
        }
        if (!this.handler?.operations.includes(request.op)) {
          return reply({ ok: false, error: { code: 'unknown_operation', message: `process ${process.pid} does not accept ${request.op}` } });
        }
        try {
          reply({ ok: true, result: await this.handler.handle(request) });
        } catch (err) {
          const code = (err as { code?: unknown }).code;
          reply({ ok: false, error: { code: typeof code === 'string' ? code : 'internal_error', message: (err as Error).message } });
        }
      })();
    });
  }

  /** Releases the lock: closing the server removes the socket file. */
  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => this.server.close(() => resolve()));
    return this.closing;
  }
}
