/**
 * `agent-sessions export [--output FILE]` and `agent-sessions import [--input FILE]`: the
 * store's data as one NDJSON stream (src/adapters/postgres/data-transfer.ts), on stdout or in a
 * file, and back into an empty store.
 *
 * Export on an embedded data directory that a running server holds goes through the server's
 * control socket, like the keys commands: the server writes the file itself, at the absolute
 * path the CLI names (the socket's 0600 mode is the credential: only the directory's owner can
 * ask), and for stdout into a temporary file in the data directory that the CLI copies out and
 * deletes. Import into a held directory refuses: its target must be new and empty anyway.
 */
import { randomBytes } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { Logger } from 'pino';
import { checkServerVersion, clearSharedCache, openDatabase } from '../app/assemble.js';
import type { Config } from '../app/config.js';
import { AgentSessionsError, ValidationError } from '../core/errors.js';
import type { SqlDatabase } from '../adapters/postgres/database.js';
import { exportData, importData, type TransferSummary } from '../adapters/postgres/data-transfer.js';
import { controlRequest, DataDirInUseError, type ControlRequest } from '../adapters/postgres/directory-lock.js';

export const TRANSFER_OPERATIONS = ['data.export'] as const;

export interface ExportRequest {
  op: 'data.export';
  /** Where the server writes the export: an absolute path. */
  path: string;
}

/** How long the CLI waits for a server to write an export. */
const SERVER_EXPORT_TIMEOUT_MS = 60 * 60_000;

/** Checks a request that came over the control socket. */
export function parseExportRequest(raw: ControlRequest): ExportRequest {
  if (raw.op !== 'data.export' || typeof raw.path !== 'string' || !path.isAbsolute(raw.path)) {
    throw new ValidationError('data.export needs an absolute path');
  }
  return { op: raw.op, path: raw.path };
}

/** What the server answers: the file written and what it holds. */
export async function runExportRequest(db: SqlDatabase, request: ExportRequest, packageVersion: string): Promise<TransferSummary> {
  return exportToFile(db, request.path, packageVersion);
}

/**
 * Writes the export to `file` through a temporary sibling, flushed to disk and renamed once
 * complete, so a failed export never leaves a file under the name. Mode 0600: it holds every
 * session and the API keys' hashes.
 */
export async function exportToFile(db: SqlDatabase, file: string, packageVersion: string): Promise<TransferSummary> {
  const partial = `${file}.${process.pid}-${randomBytes(4).toString('hex')}.partial`;
  const handle = await open(partial, 'wx', 0o600);
  try {
    const summary = await exportData(
      db,
      async (chunk) => {
        await handle.write(chunk);
      },
      { packageVersion },
    );
    await handle.sync();
    await handle.close();
    await rename(partial, file);
    return summary;
  } catch (err) {
    await handle.close().catch(() => undefined);
    await rm(partial, { force: true });
    throw err;
  }
}

function writeStdout(chunk: string | Buffer): Promise<void> {
  return new Promise((resolve, reject) => process.stdout.write(chunk, (err) => (err ? reject(err) : resolve())));
}

function describe(summary: TransferSummary): string {
  const total = Object.values(summary.rows).reduce((a, b) => a + b, 0);
  return `${total} rows (${Object.entries(summary.rows)
    .map(([t, n]) => `${t} ${n}`)
    .join(', ')}), schema version ${summary.schemaVersion}`;
}

export interface TransferCommandOptions {
  config: Readonly<Config>;
  packageVersion: string;
  logger: Logger;
}

/** `export`: the export on stdout (or in `output`); a one-line summary on stderr. */
export async function exportCommand(output: string | null, options: TransferCommandOptions): Promise<void> {
  const { config, packageVersion } = options;
  // A reader that goes away (`| head`) fails the write with EPIPE: one line, exit 1.
  process.stdout.on('error', () => undefined);
  const started = performance.now();
  const pgdata = path.resolve(config.dataDir, 'pgdata');
  if (!config.databaseUrl && config.dataDir !== ':memory:' && !existsSync(pgdata)) {
    throw new ValidationError(`no data directory at ${path.resolve(config.dataDir)}: nothing to export`);
  }
  const db = openDatabase(config);
  let summary: TransferSummary;
  try {
    await db.ready();
    await checkServerVersion(db);
    summary = output ? await exportToFile(db, path.resolve(output), packageVersion) : await exportData(db, writeStdout, { packageVersion });
  } catch (err) {
    if (!(err instanceof DataDirInUseError)) throw err;
    summary = await exportThroughServer(err, output, config);
  } finally {
    await db.close();
  }
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  process.stderr.write(`agent-sessions: exported ${describe(summary)} to ${output ?? 'stdout'} in ${seconds} s\n`);
}

async function exportThroughServer(held: DataDirInUseError, output: string | null, config: Readonly<Config>): Promise<TransferSummary> {
  const file = output
    ? path.resolve(output)
    : path.join(path.resolve(config.dataDir), `export-${process.pid}-${randomBytes(4).toString('hex')}.ndjson`);
  try {
    const reply = await controlRequest(held.dataDir, { op: 'data.export', path: file }, SERVER_EXPORT_TIMEOUT_MS);
    // The holder just exited: the one clear line; running the command again opens the directory.
    if (reply === null) throw held;
    if (!reply.ok) {
      if (reply.error.code === 'unknown_operation') {
        throw new DataDirInUseError(held.dataDir, held.pid, 'it is not a running server that accepts export; stop it first');
      }
      throw new AgentSessionsError('unavailable', `the server holding ${held.dataDir} answered: ${reply.error.message}`);
    }
    if (!output) for await (const chunk of createReadStream(file)) await writeStdout(chunk as Buffer);
    return reply.result as TransferSummary;
  } finally {
    if (!output) await rm(file, { force: true });
  }
}

/**
 * `import`: reads the export from `input` (or stdin) into the configured store, which must
 * hold no data; prints a JSON summary on stdout. On PostgreSQL with REDIS_URL set it then
 * clears the key prefix, so no instance serves a cached copy older than what was imported.
 */
export async function importCommand(input: string | null, options: TransferCommandOptions): Promise<void> {
  const { config, logger } = options;
  const started = performance.now();
  // Opened first: a mistyped name is one line and touches no database.
  const handle = input ? await open(path.resolve(input), 'r') : null;
  let lines: ReturnType<typeof createInterface> | null = null;
  const db = openDatabase(config);
  let summary: TransferSummary;
  try {
    try {
      await db.ready();
    } catch (err) {
      if (!(err instanceof DataDirInUseError)) throw err;
      throw new DataDirInUseError(err.dataDir, err.pid, 'stop it first: import only into a data directory nobody has open (and that holds no data)');
    }
    await checkServerVersion(db);
    // Made just before it is read: readline drops the lines it reads before iteration starts.
    lines = createInterface({ input: handle ? handle.createReadStream() : process.stdin, crlfDelay: Infinity });
    summary = await importData(db, lines);
  } finally {
    lines?.close();
    await handle?.close().catch(() => undefined);
    await db.close();
  }
  if (db.kind === 'postgres' && config.redisUrl) {
    try {
      const keys = await clearSharedCache(config);
      logger.info({ keys, keyPrefix: config.keyPrefix }, 'cleared the Redis cache');
    } catch (err) {
      // The import forgot the trusted Redis servers, so each instance clears it when it connects.
      process.stderr.write(
        `agent-sessions: imported, but Redis could not be cleared (${(err as Error).message}); ` +
          `instances clear it when they next connect: restart any that are running\n`,
      );
    }
  }
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  process.stderr.write(`agent-sessions: imported ${describe(summary)} in ${seconds} s\n`);
  process.stdout.write(`${JSON.stringify(summary)}\n`);
}
