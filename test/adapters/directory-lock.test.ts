/**
 * The embedded data directory's lock (src/adapters/postgres/directory-lock.ts): one holder,
 * a stale socket from a killed process taken over by exactly one of several racing openers,
 * the control channel's answers, and the fallback for a path too long for a Unix socket.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { controlRequest, directoryHolder, DirectoryLock, lockSocketPath } from '../../src/adapters/postgres/directory-lock.js';
import { within } from '../setup/harness.js';

const base = mkdtempSync(path.join(os.tmpdir(), 'as-lock-'));
let n = 0;
const freshDir = () => path.join(base, `d${++n}`, 'pgdata');

/** Leaves a socket file nobody accepts on: a process listens on it and is killed with SIGKILL. */
async function staleSocket(dir: string): Promise<void> {
  const socket = lockSocketPath(dir);
  const child = spawn(process.execPath, [
    '-e',
    `require('node:fs').mkdirSync(require('node:path').dirname(${JSON.stringify(socket)}), { recursive: true });
     require('node:net').createServer().listen(${JSON.stringify(socket)}, () => console.log('up'));`,
  ]);
  await once(child.stdout, 'data');
  child.kill('SIGKILL');
  await once(child, 'exit');
  expect(statSync(socket).isSocket()).toBe(true);
}

describe('adapters/directory lock', () => {
  afterAll(() => rmSync(base, { recursive: true, force: true }));

  it('has one holder; a second opener is refused with the holder pid; close releases it', async () => {
    const dir = freshDir();
    const lock = await DirectoryLock.acquire(dir);
    expect(statSync(lock.socketPath).mode & 0o777).toBe(0o600);
    await expect(DirectoryLock.acquire(dir)).rejects.toMatchObject({ code: 'data_dir_in_use', details: { pid: process.pid } });
    expect(await directoryHolder(dir)).toEqual({ pid: process.pid, operations: [] });
    await lock.close();
    expect(existsSync(lock.socketPath)).toBe(false);
    expect(await directoryHolder(dir)).toBeNull();
    const again = await DirectoryLock.acquire(dir);
    await again.close();
  });

  it('takes over the socket of a killed holder, and of several racing openers exactly one wins', async () => {
    const dir = freshDir();
    await staleSocket(dir);
    expect(await directoryHolder(dir)).toBeNull();
    const outcomes = await Promise.allSettled(Array.from({ length: 4 }, () => DirectoryLock.acquire(dir)));
    const won = outcomes.filter((o): o is PromiseFulfilledResult<DirectoryLock> => o.status === 'fulfilled');
    expect(won).toHaveLength(1);
    for (const o of outcomes) if (o.status === 'rejected') expect(o.reason).toMatchObject({ code: 'data_dir_in_use' });
    expect(existsSync(`${lockSocketPath(dir)}.takeover`)).toBe(false);
    await won[0]?.value.close();
  });

  it('answers hello, the operations it serves, and their errors by code', async () => {
    const dir = freshDir();
    const lock = await DirectoryLock.acquire(dir);
    try {
      expect(await controlRequest(dir, { op: 'keys.list' })).toMatchObject({ ok: false, error: { code: 'unknown_operation' } });
      lock.serve(['echo', 'boom'], async (request) => {
        if (request.op === 'boom') throw Object.assign(new Error('no'), { code: 'validation_failed' });
        return { echoed: request.value };
      });
      expect(await directoryHolder(dir)).toEqual({ pid: process.pid, operations: ['echo', 'boom'] });
      expect(await controlRequest(dir, { op: 'echo', value: [1, 'two'] })).toEqual({ ok: true, result: { echoed: [1, 'two'] } });
      expect(await controlRequest(dir, { op: 'boom' })).toEqual({ ok: false, error: { code: 'validation_failed', message: 'no' } });
    } finally {
      await lock.close();
    }
    expect(await controlRequest(dir, { op: 'echo' })).toBeNull();
  });

  it('puts the socket in the temporary directory when the path beside the data is too long for one', async () => {
    const dir = path.join(base, 'x'.repeat(120), 'pgdata');
    const socket = lockSocketPath(dir);
    expect(path.dirname(socket)).toBe(os.tmpdir());
    expect(lockSocketPath(dir)).toBe(socket);
    const lock = await DirectoryLock.acquire(dir);
    await expect(DirectoryLock.acquire(dir)).rejects.toMatchObject({ code: 'data_dir_in_use' });
    await lock.close();
    await within(1_000, async () => !existsSync(socket));
  });
});
