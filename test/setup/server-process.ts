/**
 * Runs the real CLI (`agent-sessions serve`) as a child process on a free port, for
 * end-to-end tests over a real socket.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { freePort } from './services.js';

export { freePort };

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface ServerProcess {
  url: string;
  port: number;
  child: ChildProcess;
  /** Everything the process wrote to stdout and stderr so far. */
  output(): string;
  /** What it wrote to stderr alone (its logs). */
  stderr(): string;
  /** What it wrote to stdout alone. */
  stdout(): string;
  /** Sends a signal and waits for the exit; resolves to the exit code (null if killed by signal). */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export interface StartServerOptions {
  env?: Record<string, string>;
  args?: string[];
  port?: number;
  /** How long to wait for /health (default 60 s; PGlite's first start is slow). */
  timeoutMs?: number;
  /** Node arguments that run the CLI (default: the sources through tsx; `['dist/cli/index.js']` runs the build). */
  cli?: string[];
}

const SOURCE_CLI = ['--import', 'tsx', 'src/cli/index.ts'];

/** The server could not bind its port: another process took it after we picked it. */
class PortTakenError extends Error {
  constructor(
    message: string,
    readonly output: string,
  ) {
    super(message);
  }
}

export async function startServer(options: StartServerOptions = {}): Promise<ServerProcess> {
  // A port picked here can be taken by another process before the server binds it (it takes
  // seconds to start): then it exits with EADDRINUSE and we try another port. What the failed
  // attempt printed is kept (a first start prints its generated admin key before it listens).
  let earlier = '';
  for (let attempt = 1; ; attempt++) {
    const port = options.port ?? (await freePort());
    try {
      return await startOn(port, options, earlier);
    } catch (err) {
      if (options.port !== undefined || attempt >= 3 || !(err instanceof PortTakenError)) throw err;
      earlier += err.output;
    }
  }
}

async function startOn(port: number, options: StartServerOptions, earlier: string): Promise<ServerProcess> {
  const child = spawn(process.execPath, [...(options.cli ?? SOURCE_CLI), 'serve', ...(options.args ?? [])], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '',
      LOG_LEVEL: 'warn',
      // Suites run two files at once against one PostgreSQL (max_connections 100 by default):
      // a multi-process test at the default pool of 20 per server can take most of it.
      DATABASE_POOL_MAX: '8',
      ...options.env,
      PORT: String(port),
      HOST: '127.0.0.1',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => {
    output += d.toString();
    stdout += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    output += d.toString();
    stderr += d.toString();
  });
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + (options.timeoutMs ?? 60_000);
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      const message = `server exited before it was ready:\n${output}`;
      throw output.includes('EADDRINUSE') ? new PortTakenError(message, output) : new Error(message);
    }
    try {
      // Bounded, so a port held by something that accepts and never answers cannot hang us.
      const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(2_000) });
      if (res.ok) break;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`server did not become ready in time:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    port,
    child,
    output: () => earlier + output,
    stderr: () => stderr,
    stdout: () => stdout,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
  /** How long the process ran (ms). */
  elapsedMs: number;
}

/**
 * Runs one `agent-sessions <args>` command to its end with only `env` (plus PATH and HOME)
 * as its environment. A process still running after `timeoutMs` is killed and the promise
 * rejects: a command that hangs fails its test instead of stalling the run.
 */
export function runCli(args: string[], env: Record<string, string> = {}, timeoutMs = 60_000): Promise<CliResult> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...SOURCE_CLI, ...args], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', LOG_LEVEL: 'warn', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`agent-sessions ${args.join(' ')} did not finish in ${timeoutMs} ms:\n${stdout}${stderr}`));
    }, timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, elapsedMs: performance.now() - started });
    });
  });
}
