/**
 * The real HAProxy with the repository's deploy/haproxy.cfg, for end-to-end tests: the file
 * deploy/compose.yaml mounts, with its addresses given through the environment variables it
 * reads. The static deployment test validates the same file with the same variables
 * (`haproxy -c`), so what the end-to-end test ran is what compose runs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, which } from './services.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** The configuration file, relative to the repository root (as compose.yaml mounts it). */
export const HAPROXY_CONFIG = 'deploy/haproxy.cfg';

/** Where Debian installs it (not on every user's PATH). */
export function haproxyBinary(): string | null {
  return which('haproxy', ['/usr/sbin', '/usr/local/sbin']);
}

/** The variables haproxy.cfg reads: where it listens and the three instances (host:port). */
export function haproxyEnv(bind: string, backends: readonly [string, string, string]): Record<string, string> {
  const [a, b, c] = backends;
  return { HAPROXY_BIND: bind, AGENT_SESSIONS_A: a, AGENT_SESSIONS_B: b, AGENT_SESSIONS_C: c };
}

export interface HaproxyProcess {
  url: string;
  port: number;
  child: ChildProcess;
  /** What it logged (one line per request with `option httplog`, and server state changes). */
  output(): string;
  /** SIGTERM, then the exit. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Starts haproxy in the foreground on a free loopback port in front of `backends`, and waits
 * until it accepts connections. A port taken between our pick and haproxy's bind is retried.
 */
export async function startHaproxy(backends: readonly [string, string, string], timeoutMs = 15_000): Promise<HaproxyProcess> {
  const binary = haproxyBinary();
  if (binary === null) throw new Error('haproxy is not installed');
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const started = await startOn(binary, port, backends, timeoutMs);
    if (started !== 'port taken') return started;
    if (attempt >= 3) throw new Error('haproxy could not bind a free port in 3 attempts');
  }
}

async function startOn(
  binary: string,
  port: number,
  backends: readonly [string, string, string],
  timeoutMs: number,
): Promise<HaproxyProcess | 'port taken'> {
  // -db: stay in the foreground, logs on stdout (`log stdout` in the file).
  const child = spawn(binary, ['-db', '-f', path.join(ROOT, HAPROXY_CONFIG)], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', ...haproxyEnv(`127.0.0.1:${port}`, backends) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  const exited = once(child, 'exit');
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      if (/cannot bind|Address already in use/i.test(output)) return 'port taken';
      throw new Error(`haproxy exited (${child.exitCode ?? child.signalCode}):\n${output}`);
    }
    try {
      // Any answer will do (a 503 while no instance is up yet): haproxy itself is listening.
      await fetch(`${url}/health`, { signal: AbortSignal.timeout(2_000) });
      break;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`haproxy did not listen in time:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  let stopping: Promise<void> | null = null;
  return {
    url,
    port,
    child,
    output: () => output,
    stop: () => {
      stopping ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
        await exited;
      })();
      return stopping;
    },
  };
}
