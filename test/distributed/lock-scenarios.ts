/** Lock scenarios shared by the per-mode lock tests and the Redis suite. */
import { setTimeout as sleep } from 'node:timers/promises';
import { expect } from 'vitest';
import { AgentSessionsError } from '../../src/core/errors.js';
import type { Session } from '../../src/core/types.js';
import type { Sessions } from '../../src/internal.js';

/**
 * A holds the lease (150 ms) and then stalls its whole process for 400 ms (a stop-the-world
 * pause: no renewal can run), so the lease lapses. B, already waiting, takes the lease and
 * writes. A then wakes up and writes with its old token, ignoring that its lease is gone.
 */
export async function pausedHolderRace(
  a: Sessions,
  b: Sessions,
  id: string,
): Promise<{ oldToken: number; newToken: number; oldWrite: unknown; newWrite: Session }> {
  let oldToken = 0;
  let newToken = 0;
  let started!: () => void;
  const aStarted = new Promise<void>((r) => (started = r));
  let bWrote!: () => void;
  const bDone = new Promise<void>((r) => (bWrote = r));
  const paused = a.withSessionLock(
    id,
    async ({ fencingToken }) => {
      oldToken = fencingToken;
      started();
      await sleep(30);
      const until = Date.now() + 400;
      while (Date.now() < until) {
        // Busy-wait: the event loop is blocked, as in a long GC pause.
      }
      await bDone;
      return a.update(id, { title: 'old holder' }, { fencingToken }).catch((e: unknown) => e);
    },
    { leaseMs: 150 },
  );
  await aStarted;
  const newWrite = await b.withSessionLock(
    id,
    async ({ fencingToken }) => {
      newToken = fencingToken;
      const written = await b.update(id, { title: 'new holder' }, { fencingToken });
      bWrote();
      return written;
    },
    { timeoutMs: 10_000 },
  );
  const oldWrite = await paused;
  return { oldToken, newToken, oldWrite, newWrite };
}

/**
 * Takes the session's lock on `holder` and keeps it until `release` is called; resolves once
 * the lease is held (a fixed sleep instead could let another caller in first on a slow
 * machine), with its fencing token. `done` settles when the holder has let go.
 */
export async function holdLock(
  holder: Sessions,
  id: string,
  options?: { timeoutMs?: number },
): Promise<{ token: number; release: () => void; done: Promise<void> }> {
  let release!: () => void;
  let acquired!: (token: number) => void;
  const holding = new Promise<number>((r) => (acquired = r));
  const done = holder.withSessionLock(
    id,
    ({ fencingToken }) => {
      acquired(fencingToken);
      return new Promise<void>((r) => (release = r));
    },
    options,
  );
  return { token: await holding, release, done };
}

/** The error code a rejected call fails with (an AgentSessionsError). */
export async function codeOf(promise: Promise<unknown>): Promise<string> {
  const err = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AgentSessionsError);
  return (err as AgentSessionsError).code;
}
