/**
 * withSessionLock in every configuration (embedded and PostgreSQL-only use a PostgreSQL
 * lease, PostgreSQL+Redis a Redis lease; the fencing token is PostgreSQL's sessions.fence in
 * all of them), and the repository's rejection of stale fencing tokens.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentSessionsError } from '../../src/core/errors.js';
import type { Sessions } from '../../src/internal.js';
import { CONFIGURATIONS, type Backend } from '../conformance/configurations.js';
import { requireServices } from '../setup/harness.js';
import { codeOf, holdLock, pausedHolderRace } from './lock-scenarios.js';

for (const configuration of CONFIGURATIONS) {
  const suite = `session-lock/${configuration.name}`;
  const ready = requireServices(configuration.services, suite);
  describe.skipIf(!ready)(suite, () => {
    let backend: Backend;
    let a: Sessions;
    let b: Sessions;

    beforeAll(async () => {
      backend = await configuration.prepare();
      a = await backend.open();
      // Embedded instances cannot share an in-memory database: there the "two holders" are
      // two callers in one instance, which is what embedded mode has.
      b = configuration.services.length === 0 ? a : await backend.open();
    });

    afterAll(async () => {
      if (b !== a) await b?.close();
      await a?.close();
      await backend?.dispose();
    });

    it('hands out strictly increasing fencing tokens', async () => {
      const s = await a.create();
      const tokens: number[] = [];
      for (let i = 0; i < 5; i++) {
        tokens.push(await (i % 2 ? a : b).withSessionLock(s.id, async ({ fencingToken }) => fencingToken));
      }
      for (let i = 1; i < tokens.length; i++) expect(tokens[i]).toBeGreaterThan(tokens[i - 1] as number);
    });

    it('lets one holder in at a time', async () => {
      const s = await a.create();
      let inside = 0;
      let most = 0;
      await Promise.all(
        Array.from({ length: 8 }, (_, i) =>
          (i % 2 ? a : b).withSessionLock(
            s.id,
            async () => {
              inside++;
              most = Math.max(most, inside);
              await sleep(5);
              inside--;
            },
            { timeoutMs: 20_000 },
          ),
        ),
      );
      expect(most).toBe(1);
    });

    it('fails with lock_timeout when the lease stays taken', async () => {
      const s = await a.create();
      const { release, done: held } = await holdLock(a, s.id);
      const started = Date.now();
      expect(await codeOf(b.withSessionLock(s.id, async () => 1, { timeoutMs: 250 }))).toBe('lock_timeout');
      expect(Date.now() - started).toBeGreaterThanOrEqual(240);
      release();
      await held;
      // Released: the next caller gets it at once.
      expect(await b.withSessionLock(s.id, async () => 'free')).toBe('free');
    });

    it('a lapsed lease can be taken over', async () => {
      const s = await a.create();
      const outcome = await pausedHolderRace(a, b, s.id);
      expect(outcome.newToken).toBeGreaterThan(outcome.oldToken);
      expect(outcome.oldWrite).toBeInstanceOf(AgentSessionsError);
      expect((outcome.oldWrite as AgentSessionsError).code).toBe('stale_fencing_token');
      const final = await b.get(s.id);
      expect(final.title).toBe('new holder');
      expect(final.version).toBe(outcome.newWrite.version);
    });

    it('the repository rejects every write kind carrying a token older than the newest', async () => {
      const s = await a.create();
      const old = await a.withSessionLock(s.id, async ({ fencingToken }) => fencingToken);
      const current = await a.withSessionLock(s.id, async ({ fencingToken }) => fencingToken);
      const before = await a.get(s.id);
      const stale = { fencingToken: old };
      expect(await codeOf(a.update(s.id, { title: 'x' }, stale))).toBe('stale_fencing_token');
      expect(await codeOf(a.touch(s.id, stale))).toBe('stale_fencing_token');
      expect(await codeOf(a.incrementCounters(s.id, { totalTurns: 1 }, stale))).toBe('stale_fencing_token');
      expect(await codeOf(a.items.append(s.id, [{ role: 'user', content: 'hi' }], stale))).toBe('stale_fencing_token');
      expect(await codeOf(a.terminate(s.id, 'x', stale))).toBe('stale_fencing_token');
      expect((await b.get(s.id)).version).toBe(before.version);
      // The newest token (and one not yet handed out) still writes.
      expect((await a.update(s.id, { title: 'ok' }, { fencingToken: current })).title).toBe('ok');
      expect((await a.update(s.id, { title: 'later' }, { fencingToken: current + 1 })).title).toBe('later');
    });

    it('a lease on a missing session is session_not_found, and leaves nothing behind', async () => {
      const id = crypto.randomUUID();
      expect(await codeOf(a.withSessionLock(id, async () => 1))).toBe('session_not_found');
      const s = await a.create({ id });
      expect(await a.withSessionLock(s.id, async () => 'ok', { timeoutMs: 200 })).toBe('ok');
    });

    it('fires the signal when the lease is lost', async () => {
      const s = await a.create();
      const reason = await a.withSessionLock(
        s.id,
        async ({ signal }) => {
          const until = Date.now() + 300;
          while (Date.now() < until) {
            // Blocked past the 100 ms lease; meanwhile another caller takes it.
          }
          const taken = b.withSessionLock(s.id, async () => undefined, { timeoutMs: 5_000 });
          await taken;
          // The next renewal (every ~33 ms) fails and fires the signal; allow a slow machine time.
          for (const deadline = Date.now() + 10_000; !signal.aborted && Date.now() < deadline; ) await sleep(10);
          return signal.aborted;
        },
        { leaseMs: 100 },
      );
      expect(reason).toBe(true);
    });
  });
}
