/**
 * The command runner (`AGENT_COMMAND`): one child process per run. The run's inputs (one
 * unless merged or debounced) are the first lines on stdin, and every forwarded (or steered)
 * input another line; every stdout line becomes an
 * output event (a JSON object with a string `type` passes through as a structured event,
 * anything else is `text`). An interrupt sends SIGINT, then SIGTERM and SIGKILL after grace
 * periods, to the child's whole process group. Exit code 0 completes the run; anything
 * else fails it.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { GAP_EVENT_TYPE, SERVICE_EVENT_TYPES, type NewOutputEvent, type Runner } from '../core/runs.js';

export interface CommandRunnerOptions {
  /** A shell command line. */
  command: string;
  cwd?: string;
  env?: Record<string, string>;
  /** SIGINT → SIGTERM after this long (default 2000 ms). */
  interruptGraceMs?: number;
  /** SIGTERM → SIGKILL after this long (default 5000 ms). */
  killGraceMs?: number;
  /** Longest stdout line kept, in characters (default 256 KiB). */
  maxLineLength?: number;
}

/** The service's own event types (done, error, restarted, and a reader's gap): a child's are renamed. */
const RESERVED = new Set([...SERVICE_EVENT_TYPES, GAP_EVENT_TYPE]);
const TYPE = /^[A-Za-z][\w.:-]{0,63}$/;

/** One stdout line as an output event. */
export function lineToEvent(line: string): NewOutputEvent {
  const trimmed = line.trim();
  if (trimmed.startsWith('{')) {
    try {
      const parsed = JSON.parse(trimmed) as unknown;
      if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) {
        const { type, data, ...rest } = parsed as Record<string, unknown>;
        if (typeof type === 'string' && TYPE.test(type)) {
          // done/error/restarted/gap are the server's events; the child's own are renamed.
          const name = RESERVED.has(type) ? `agent_${type}` : type;
          return { type: name, data: data !== undefined ? data : rest };
        }
      }
    } catch {
      // not JSON: plain text
    }
  }
  return { type: 'text', data: { text: line } };
}

function toLine(input: unknown): string {
  const text = typeof input === 'string' ? input : JSON.stringify(input);
  return `${text.replace(/\r?\n/g, ' ')}\n`;
}

export function commandRunner(options: CommandRunnerOptions): Runner {
  const interruptGraceMs = options.interruptGraceMs ?? 2_000;
  const killGraceMs = options.killGraceMs ?? 5_000;
  const maxLine = options.maxLineLength ?? 256 * 1024;
  const runner: Runner = (run) =>
    new Promise<void>((resolve, reject) => {
      const child = spawn(options.command, {
        shell: true,
        detached: true,
        cwd: options.cwd,
        env: { ...process.env, ...options.env, AGENT_SESSION_ID: run.sessionId, AGENT_RUN_ID: run.id },
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      const timers: NodeJS.Timeout[] = [];
      let stderr = '';
      // The whole group: the shell may already have exited while what it started runs on.
      const signalGroup = (sig: NodeJS.Signals) => {
        if (child.pid === undefined) return;
        try {
          process.kill(-child.pid, sig);
        } catch {
          // the group is gone
        }
      };
      const onAbort = () => {
        signalGroup('SIGINT');
        timers.push(setTimeout(() => signalGroup('SIGTERM'), interruptGraceMs));
        timers.push(setTimeout(() => signalGroup('SIGKILL'), interruptGraceMs + killGraceMs));
      };
      if (run.signal.aborted) onAbort();
      else run.signal.addEventListener('abort', onAbort, { once: true });

      child.stdin.on('error', () => undefined);
      for (const input of run.initialInputs) {
        if (input !== null && input !== undefined) child.stdin.write(toLine(input));
      }
      void (async () => {
        for await (const input of run.inputs) {
          if (!child.stdin.writable) break;
          child.stdin.write(toLine(input));
        }
      })();

      const lines = createInterface({ input: child.stdout, crlfDelay: Infinity });
      lines.on('line', (line) => {
        run.emit(lineToEvent(line.length > maxLine ? line.slice(0, maxLine) : line)).catch(() => undefined);
      });
      child.stderr.on('data', (chunk: Buffer) => {
        stderr = (stderr + chunk.toString('utf8')).slice(-2_048);
      });

      let exit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
      let linesClosed = false;
      const finish = () => {
        if (!exit || !linesClosed) return;
        for (const t of timers) clearTimeout(t);
        run.signal.removeEventListener('abort', onAbort);
        child.stdin.destroy();
        if (run.signal.aborted || exit.code === 0) resolve();
        else {
          const how = exit.code !== null ? `code ${exit.code}` : `signal ${exit.signal}`;
          reject(new Error(`agent command exited with ${how}${stderr ? `: ${stderr.trim()}` : ''}`));
        }
      };
      lines.on('close', () => {
        linesClosed = true;
        finish();
      });
      child.on('error', (err) => {
        for (const t of timers) clearTimeout(t);
        reject(new Error(`agent command could not start: ${err.message}`));
      });
      child.on('exit', (code, signal) => {
        exit = { code, signal };
        finish();
      });
    });
  // Input sent or steered while it runs is written to the child's stdin.
  return Object.assign(runner, { takesInput: true });
}
