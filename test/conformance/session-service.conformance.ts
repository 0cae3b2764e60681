/**
 * The behaviour every configuration of the session service must show, written once.
 * `sessionServiceConformance` is called inside a `describe` per configuration (see
 * session-service.test.ts); it must not depend on which storage is underneath.
 *
 * Tests run one after another against one `Sessions` per suite, so counting outbox rows
 * before and after a call tells exactly what that call wrote.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentSessionsError, type ErrorCode } from '../../src/core/errors.js';
import { isUuid } from '../../src/core/ids.js';
import type { NewItem, Session, SessionItem } from '../../src/core/types.js';
import type { Sessions } from '../../src/internal.js';
import type { Backend } from './configurations.js';
import { internals } from '../../src/internal.js';

/** Awaits `promise`, which must reject with an AgentSessionsError carrying `code`. */
async function rejectsWith(promise: Promise<unknown>, code: ErrorCode): Promise<AgentSessionsError> {
  const outcome = await promise.then(
    (value) => ({ ok: true as const, value }),
    (error: unknown) => ({ ok: false as const, error }),
  );
  if (outcome.ok) throw new Error(`expected a rejection with code ${code}, but it resolved`);
  const { error } = outcome;
  expect(error, `expected ${code}, got ${String(error)}`).toBeInstanceOf(AgentSessionsError);
  expect((error as AgentSessionsError).code).toBe(code);
  return error as AgentSessionsError;
}

function uuid(): string {
  return crypto.randomUUID();
}

export function sessionServiceConformance(prepare: () => Promise<Backend>): void {
  let backend: Backend;
  let sessions: Sessions;

  beforeAll(async () => {
    backend = await prepare();
    sessions = await backend.open();
  });

  afterAll(async () => {
    await sessions?.close();
    await backend?.dispose();
  });

  // --- reading the truth directly, bypassing the service and its cache ---------------------

  async function outboxCount(): Promise<number> {
    const rows = await internals(sessions).db.query<{ n: number | string }>('SELECT count(*) AS n FROM outbox');
    return Number(rows[0]?.n);
  }

  async function outboxEvents(sessionId: string): Promise<Array<{ type: string; payload: Record<string, unknown> }>> {
    return internals(sessions).db.query('SELECT type, payload FROM outbox WHERE session_id = $1 ORDER BY id', [sessionId]);
  }

  async function storedVersion(sessionId: string): Promise<number | null> {
    const rows = await internals(sessions).db.query<{ version: number | string }>('SELECT version FROM sessions WHERE id = $1', [
      sessionId,
    ]);
    return rows[0] ? Number(rows[0].version) : null;
  }

  async function storedItemCount(sessionId: string): Promise<number> {
    const rows = await internals(sessions).db.query<{ n: number | string }>(
      'SELECT count(*) AS n FROM session_items WHERE session_id = $1',
      [sessionId],
    );
    return Number(rows[0]?.n);
  }

  /** The call must reject with `code` and leave the session's row and the outbox untouched. */
  async function rejectsUnchanged(sessionId: string, call: () => Promise<unknown>, code: ErrorCode): Promise<AgentSessionsError> {
    const version = await storedVersion(sessionId);
    const items = await storedItemCount(sessionId);
    const outbox = await outboxCount();
    const err = await rejectsWith(call(), code);
    expect(await storedVersion(sessionId)).toBe(version);
    expect(await storedItemCount(sessionId)).toBe(items);
    expect(await outboxCount()).toBe(outbox);
    return err;
  }

  /** A user id no other test uses, so lists filtered by it see only this test's sessions. */
  function user(): string {
    return `user-${uuid()}`;
  }

  // -------------------------------------------------------------------------------------------

  describe('create', () => {
    it('assigns a UUID, version 1 and defaults, and writes session.created with it', async () => {
      const before = await outboxCount();
      const s = await sessions.create();
      expect(isUuid(s.id)).toBe(true);
      expect(s).toMatchObject({
        version: 1,
        status: 'idle',
        tenantId: 'default',
        userId: null,
        parentSessionId: null,
        metadata: {},
        mcpClientIds: [],
        totalTurns: 0,
        messageCount: 0,
        totalCostUsd: 0,
        inputTokens: 0,
        outputTokens: 0,
        endedAt: null,
        endReason: null,
      });
      expect(Date.parse(s.createdAt)).not.toBeNaN();
      expect(await outboxCount()).toBe(before + 1);
      const events = await outboxEvents(s.id);
      expect(events.map((e) => e.type)).toEqual(['session.created']);
      expect((events[0]?.payload.session as { id: string }).id).toBe(s.id);
    });

    it('stores every field given', async () => {
      const input = {
        userId: user(),
        orgId: 'org-1',
        status: 'initializing' as const,
        model: 'claude-sonnet',
        title: 'A title',
        systemPrompt: 'Be brief.',
        workspacePath: '/work/space',
        mcpClientIds: ['fs', 'git'],
        metadata: { a: 1, nested: { b: [1, 2, 3] }, s: 'text' },
      };
      const created = await sessions.create(input);
      expect(created).toMatchObject(input);
      expect(await sessions.get(created.id)).toEqual(created);
    });

    it('accepts a client id: a UUID, a nanoid, a conversation id; ids are case-sensitive', async () => {
      const tag = uuid().slice(0, 8);
      for (const id of [uuid(), `V1StGXR8_Z5jdHi6B-${tag}`, `conv_${tag}`, `user:42:chat.${tag}`, `_${tag}`]) {
        const s = await sessions.create({ id });
        expect(s.id).toBe(id);
        expect((await sessions.get(id)).id).toBe(id);
      }
      const lower = `case-${tag}`;
      await sessions.create({ id: lower, title: 'lower' });
      expect(await sessions.find(lower.toUpperCase())).toBeNull();
      const upper = await sessions.create({ id: lower.toUpperCase(), title: 'upper' });
      expect(upper.id).toBe(lower.toUpperCase());
      expect((await sessions.get(lower)).title).toBe('lower');
    });

    it('rejects a client id outside the id pattern', async () => {
      const before = await outboxCount();
      for (const id of ['', '.hidden', 'a/b', 'has space', 'é', 'x'.repeat(129), 'semi;colon', "'; drop table sessions; --"]) {
        await rejectsWith(sessions.create({ id }), 'validation_failed');
      }
      expect(await outboxCount()).toBe(before);
    });

    it('keeps ids per tenant: two tenants hold the same id without seeing each other', async () => {
      const id = `chat-${uuid().slice(0, 8)}`;
      const a = await sessions.create({ id, title: 'a' }, { tenant: 'tenant-a' });
      const b = await sessions.create({ id, title: 'b' }, { tenant: 'tenant-b' });
      expect([a.tenantId, b.tenantId]).toEqual(['tenant-a', 'tenant-b']);
      await sessions.update(id, { title: 'a2' }, { tenant: 'tenant-a' });
      await sessions.items.append(id, [{ role: 'user', content: 'only a' }], { tenant: 'tenant-a' });
      expect((await sessions.get(id, { tenant: 'tenant-a' })).title).toBe('a2');
      expect((await sessions.get(id, { tenant: 'tenant-b' })).title).toBe('b');
      expect((await sessions.items.list(id, {}, { tenant: 'tenant-b' })).items).toEqual([]);
      expect(await sessions.find(id)).toBeNull();
      await rejectsWith(sessions.create({ id }, { tenant: 'tenant-a' }), 'session_exists');
      expect(await sessions.purge(id, { tenant: 'tenant-b' })).toBe(true);
      expect(await sessions.find(id, { tenant: 'tenant-b' })).toBeNull();
      expect((await sessions.get(id, { tenant: 'tenant-a' })).title).toBe('a2');
      const forked = await sessions.fork(id, { id: `${id}-fork` }, { tenant: 'tenant-a' });
      expect((await sessions.items.list(forked.id, {}, { tenant: 'tenant-a' })).items.map((i) => i.content)).toEqual(['only a']);
    });

    it('rejects a duplicate id with session_exists and changes nothing', async () => {
      const s = await sessions.create({ title: 'first' });
      await rejectsUnchanged(s.id, () => sessions.create({ id: s.id, title: 'second' }), 'session_exists');
      expect((await sessions.get(s.id)).title).toBe('first');
    });

    it('rejects a parent that does not exist', async () => {
      const before = await outboxCount();
      await rejectsWith(sessions.create({ parentSessionId: uuid() }), 'session_not_found');
      expect(await outboxCount()).toBe(before);
    });
  });

  describe('get, find, exists', () => {
    it('reads what was written', async () => {
      const s = await sessions.create({ title: 'read me' });
      expect(await sessions.get(s.id)).toEqual(s);
      expect(await sessions.find(s.id)).toEqual(s);
      expect(await sessions.exists(s.id)).toBe(true);
    });

    it('distinguishes a missing session', async () => {
      const id = uuid();
      await rejectsWith(sessions.get(id), 'session_not_found');
      expect(await sessions.find(id)).toBeNull();
      expect(await sessions.exists(id)).toBe(false);
    });

    it('rejects an id outside the id pattern', async () => {
      await rejectsWith(sessions.get('not/an/id'), 'validation_failed');
      await rejectsWith(sessions.find("'; drop table sessions; --"), 'validation_failed');
      // Also while the caches hold sessions (a near hit skips the check: only a checked id gets there).
      const s = await sessions.create({ title: 'held' });
      await sessions.get(s.id);
      await sessions.get(s.id);
      for (const bad of ['', '.' + s.id, `${s.id}/x`, s.id + 'x'.repeat(128), `${s.id} `]) {
        await rejectsWith(sessions.get(bad), 'validation_failed');
        await rejectsWith(sessions.find(bad), 'validation_failed');
      }
    });

    it('honours an aborted signal', async () => {
      const s = await sessions.create();
      await expect(sessions.get(s.id, { signal: AbortSignal.abort() })).rejects.toThrow();
      await expect(sessions.update(s.id, { title: 'x' }, { signal: AbortSignal.abort() })).rejects.toThrow();
      expect(await storedVersion(s.id)).toBe(1);
    });
  });

  describe('update', () => {
    it('merges metadata shallowly; a key set to null is removed', async () => {
      const s = await sessions.create({ metadata: { a: 1, b: { x: 1 }, keep: 'yes' } });
      const u = await sessions.update(s.id, { metadata: { a: null, b: { y: 2 }, c: true } });
      expect(u.metadata).toEqual({ b: { y: 2 }, keep: 'yes', c: true });
      expect(u.version).toBe(2);
      expect((await sessions.get(s.id)).metadata).toEqual(u.metadata);
    });

    it('keeps nulls nested inside metadata values (only top-level null removes a key)', async () => {
      const s = await sessions.create({ metadata: { settings: { timeout: null, retries: 3 }, list: [{ v: null }] } });
      const u = await sessions.update(s.id, { metadata: { other: 1, more: { inner: null } } });
      expect(u.metadata).toEqual({
        settings: { timeout: null, retries: 3 },
        list: [{ v: null }],
        other: 1,
        more: { inner: null },
      });
    });

    it('changes plain fields and writes session.updated', async () => {
      const s = await sessions.create();
      const u = await sessions.update(s.id, { title: 'new', model: 'm', mcpClientIds: ['a'], systemPrompt: null });
      expect(u).toMatchObject({ title: 'new', model: 'm', mcpClientIds: ['a'], version: 2 });
      expect((await outboxEvents(s.id)).map((e) => e.type)).toEqual(['session.created', 'session.updated']);
    });

    it('allows valid status transitions and records each', async () => {
      const s = await sessions.create({ status: 'initializing' });
      let version = s.version;
      for (const status of ['active', 'waiting_input', 'active', 'idle'] as const) {
        const u = await sessions.update(s.id, { status });
        expect(u.status).toBe(status);
        expect(u.version).toBe(++version);
      }
      const changes = (await outboxEvents(s.id)).filter((e) => e.type === 'session.status_changed');
      expect(changes.map((e) => [e.payload.from, e.payload.to])).toEqual([
        ['initializing', 'active'],
        ['active', 'waiting_input'],
        ['waiting_input', 'active'],
        ['active', 'idle'],
      ]);
    });

    it('rejects an invalid status transition with invalid_transition and changes nothing', async () => {
      const s = await sessions.create();
      await rejectsUnchanged(s.id, () => sessions.update(s.id, { status: 'initializing', title: 'x' }), 'invalid_transition');
      const a = await sessions.update(s.id, { status: 'active' });
      await rejectsUnchanged(s.id, () => sessions.update(s.id, { status: 'expired' }), 'invalid_transition');
      expect((await sessions.get(s.id)).version).toBe(a.version);
    });

    it('ends a session with a status change to terminated', async () => {
      const s = await sessions.create();
      const t = await sessions.update(s.id, { status: 'terminated' });
      expect(t.status).toBe('terminated');
      expect(t.endedAt).not.toBeNull();
      expect((await outboxEvents(s.id)).map((e) => e.type)).toContain('session.terminated');
      await rejectsUnchanged(s.id, () => sessions.update(s.id, { status: 'active' }), 'session_ended');
    });

    it('applies expectedRevision: a match writes, a mismatch is version_conflict and changes nothing', async () => {
      const s = await sessions.create();
      expect(s.revision).toBe(1);
      const u = await sessions.update(s.id, { title: 'v2' }, { expectedRevision: 1 });
      expect(u).toMatchObject({ version: 2, revision: 2 });
      const err = await rejectsUnchanged(s.id, () => sessions.update(s.id, { title: 'stale' }, { expectedRevision: 1 }), 'version_conflict');
      expect(err.details?.currentRevision).toBe(2);
      expect((await sessions.get(s.id)).title).toBe('v2');
    });

    it('rejects a missing session with session_not_found', async () => {
      const before = await outboxCount();
      await rejectsWith(sessions.update(uuid(), { title: 'x' }), 'session_not_found');
      expect(await outboxCount()).toBe(before);
    });
  });

  describe('versions', () => {
    it('bumps the version by exactly 1 on every write', async () => {
      const s = await sessions.create();
      const writes: Array<() => Promise<{ version: number }>> = [
        () => sessions.update(s.id, { title: 't' }),
        () => sessions.touch(s.id),
        () => sessions.incrementCounters(s.id, { totalTurns: 1 }),
        async () => (await sessions.items.append(s.id, [{ role: 'user', content: 'hi' }])).session,
        async () => (await sessions.items.pop(s.id)).session,
        async () => (await sessions.items.append(s.id, [{ role: 'user', content: 'again' }])).session,
        async () => (await sessions.items.clear(s.id)).session,
        () => sessions.update(s.id, { metadata: { k: 1 } }),
        () => sessions.terminate(s.id, 'done'),
      ];
      let expected = s.version;
      for (const write of writes) {
        const result = await write();
        expected += 1;
        expect(result.version).toBe(expected);
        expect(await storedVersion(s.id)).toBe(expected);
      }
    });

    it('bumps the revision only on writes to the fields a client sets (update, terminate)', async () => {
      const s = await sessions.create();
      const writes: Array<[bumps: boolean, write: () => Promise<{ revision: number }>]> = [
        [true, () => sessions.update(s.id, { title: 't' })],
        [false, () => sessions.touch(s.id)],
        [false, () => sessions.incrementCounters(s.id, { totalTurns: 1 })],
        [false, async () => (await sessions.items.append(s.id, [{ role: 'user', content: 'hi' }])).session],
        [false, async () => (await sessions.items.pop(s.id)).session],
        [false, async () => (await sessions.items.append(s.id, [{ role: 'user', content: 'again' }])).session],
        [false, async () => (await sessions.items.clear(s.id)).session],
        [true, () => sessions.update(s.id, { metadata: { k: 1 } })],
        [true, () => sessions.update(s.id, { status: 'waiting_input' })],
        [true, () => sessions.terminate(s.id, 'done')],
      ];
      let expected = s.revision;
      for (const [bumps, write] of writes) {
        if (bumps) expected += 1;
        expect((await write()).revision).toBe(expected);
        expect((await sessions.get(s.id)).revision).toBe(expected);
      }
    });

    it('takes an expectedRevision read before appends, counters and touches', async () => {
      const s = await sessions.create();
      await sessions.items.append(s.id, [{ role: 'user', content: 'hi' }], { expectedRevision: s.revision });
      await sessions.incrementCounters(s.id, { messageCount: 1 }, { expectedRevision: s.revision });
      await sessions.touch(s.id);
      await sessions.items.append(s.id, [{ role: 'assistant', content: 'hello' }]);
      const u = await sessions.update(s.id, { metadata: { topic: 'x' } }, { expectedRevision: s.revision });
      expect(u).toMatchObject({ revision: s.revision + 1, version: s.version + 5, messageCount: 1, metadata: { topic: 'x' } });
      // The same revision again: the first update moved it on.
      const err = await rejectsUnchanged(
        s.id,
        () => sessions.update(s.id, { metadata: { topic: 'y' } }, { expectedRevision: s.revision }),
        'version_conflict',
      );
      expect(err.details?.currentRevision).toBe(u.revision);
      // Every conditional write compares the revision, appends and pops included.
      await rejectsUnchanged(s.id, () => sessions.items.append(s.id, [{ role: 'user', content: 'x' }], { expectedRevision: s.revision }), 'version_conflict');
      await rejectsUnchanged(s.id, () => sessions.items.pop(s.id, { expectedRevision: s.revision }), 'version_conflict');
      expect((await sessions.items.pop(s.id, { expectedRevision: u.revision })).item?.content).toBe('hello');
      expect((await sessions.get(s.id)).metadata).toEqual({ topic: 'x' });
    });
  });

  describe('touch', () => {
    it('extends expires_at and last_active_at', async () => {
      const s = await sessions.create({ ttlSeconds: 3_600 });
      expect(s.expiresAt).not.toBeNull();
      await sleep(20);
      const t = await sessions.touch(s.id);
      expect(Date.parse(t.expiresAt ?? '')).toBeGreaterThan(Date.parse(s.expiresAt ?? ''));
      expect(Date.parse(t.lastActiveAt)).toBeGreaterThan(Date.parse(s.lastActiveAt));
      expect(t.version).toBe(s.version + 1);
    });

    it('honours expectedRevision', async () => {
      const s = await sessions.create();
      await rejectsUnchanged(s.id, () => sessions.touch(s.id, { expectedRevision: 7 }), 'version_conflict');
    });
  });

  describe('counters', () => {
    it('counts 1,000 concurrent increments exactly', async () => {
      const s = await sessions.create();
      const results = await Promise.all(
        Array.from({ length: 1_000 }, () => sessions.incrementCounters(s.id, { totalTurns: 1, inputTokens: 3 })),
      );
      const final = await sessions.get(s.id);
      expect(final.totalTurns).toBe(1_000);
      expect(final.inputTokens).toBe(3_000);
      expect(final.version).toBe(1_001);
      // Each increment saw its own version: no two writes were merged or lost.
      expect(new Set(results.map((r) => r.version)).size).toBe(1_000);
      expect(new Set(results.map((r) => r.totalTurns)).size).toBe(1_000);
    });

    it('adds cost as a decimal, not a binary float', async () => {
      const s = await sessions.create();
      await sessions.incrementCounters(s.id, { totalCostUsd: 0.1 });
      const u = await sessions.incrementCounters(s.id, { totalCostUsd: 0.2 });
      expect(u.totalCostUsd).toBe(0.3);
      await Promise.all(Array.from({ length: 10 }, () => sessions.incrementCounters(s.id, { totalCostUsd: 0.07 })));
      expect((await sessions.get(s.id)).totalCostUsd).toBe(1);
    });

    it('increments several counters in one write', async () => {
      const s = await sessions.create();
      const u = await sessions.incrementCounters(s.id, {
        totalTurns: 1,
        messageCount: 2,
        totalCostUsd: 0.25,
        inputTokens: 100,
        outputTokens: 50,
      });
      expect(u).toMatchObject({ totalTurns: 1, messageCount: 2, totalCostUsd: 0.25, inputTokens: 100, outputTokens: 50 });
      expect(u.version).toBe(2);
    });

    it('rejects bad deltas with validation_failed and changes nothing', async () => {
      const s = await sessions.create();
      const bad: Array<Record<string, number>> = [
        {},
        { totalTurns: -1 },
        { totalTurns: 1.5 },
        { totalCostUsd: Number.NaN },
        { totalCostUsd: Number.POSITIVE_INFINITY },
        { bogus: 1 },
      ];
      for (const deltas of bad) {
        await rejectsUnchanged(s.id, () => sessions.incrementCounters(s.id, deltas), 'validation_failed');
      }
    });
  });

  describe('concurrent writers', () => {
    it('lets exactly one of 50 updates with the same expectedRevision win; 49 get version_conflict', async () => {
      const s = await sessions.create();
      const before = await outboxCount();
      const results = await Promise.allSettled(
        Array.from({ length: 50 }, (_, i) => sessions.update(s.id, { title: `writer ${i}` }, { expectedRevision: s.revision })),
      );
      const won = results.filter((r): r is PromiseFulfilledResult<Session> => r.status === 'fulfilled');
      const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      expect(won).toHaveLength(1);
      expect(lost).toHaveLength(49);
      for (const r of lost) expect((r.reason as AgentSessionsError).code).toBe('version_conflict');
      const final = await sessions.get(s.id);
      expect(final.version).toBe(s.version + 1);
      expect(final.title).toBe(won[0]?.value.title);
      expect(await outboxCount()).toBe(before + 1);
    });

    it('modify retries under contention: 20 concurrent appends to a metadata array all land', async () => {
      const s = await sessions.create({ metadata: { list: [] } });
      // A caller conflicts only when another caller's write landed since its read, so among
      // 20 callers none can conflict more than 19 times: with 19 retries every call must land.
      await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          sessions.modify(s.id, (current) => ({ metadata: { list: [...(current.metadata.list as number[]), i] } }), {
            retries: 19,
          }),
        ),
      );
      const final = await sessions.get(s.id);
      expect([...(final.metadata.list as number[])].sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i));
      expect(final.version).toBe(21);
    });

    it('modify reports a missing session and an id outside the id pattern', async () => {
      await rejectsWith(sessions.modify(uuid(), () => ({ title: 'x' })), 'session_not_found');
      await rejectsWith(sessions.modify('not an id', () => ({ title: 'x' })), 'validation_failed');
    });

    it('modify does not retry what is not a version conflict', async () => {
      const s = await sessions.create();
      let calls = 0;
      await rejectsUnchanged(
        s.id,
        () =>
          sessions.modify(s.id, () => {
            calls++;
            return { status: 'initializing' };
          }),
        'invalid_transition',
      );
      expect(calls).toBe(1);
    });
  });

  describe('terminate', () => {
    it('ends the session with a reason and writes session.terminated', async () => {
      const s = await sessions.create();
      const t = await sessions.terminate(s.id, 'user_left');
      expect(t).toMatchObject({ status: 'terminated', endReason: 'user_left', version: s.version + 1 });
      expect(t.endedAt).not.toBeNull();
      const types = (await outboxEvents(s.id)).map((e) => e.type);
      expect(types).toContain('session.terminated');
      expect((await sessions.get(s.id)).status).toBe('terminated');
    });

    it('is idempotent: a second terminate changes nothing and writes no event', async () => {
      const s = await sessions.create();
      const first = await sessions.terminate(s.id, 'first');
      const before = await outboxCount();
      const second = await sessions.terminate(s.id, 'second');
      expect(second.version).toBe(first.version);
      expect(second.endReason).toBe('first');
      expect(await outboxCount()).toBe(before);
    });

    it('honours expectedRevision', async () => {
      const s = await sessions.create();
      await rejectsUnchanged(s.id, () => sessions.terminate(s.id, 'x', { expectedRevision: 5 }), 'version_conflict');
    });

    it('rejects every other write on a terminated session with session_ended', async () => {
      const s = await sessions.create();
      await sessions.items.append(s.id, [{ role: 'user', content: 'hello' }]);
      await sessions.terminate(s.id);
      await rejectsUnchanged(s.id, () => sessions.update(s.id, { title: 'x' }), 'session_ended');
      await rejectsUnchanged(s.id, () => sessions.update(s.id, { metadata: { a: 1 } }), 'session_ended');
      await rejectsUnchanged(s.id, () => sessions.touch(s.id), 'session_ended');
      await rejectsUnchanged(s.id, () => sessions.incrementCounters(s.id, { totalTurns: 1 }), 'session_ended');
      await rejectsUnchanged(s.id, () => sessions.items.append(s.id, [{ role: 'user', content: 'x' }]), 'session_ended');
      await rejectsUnchanged(s.id, () => sessions.items.pop(s.id), 'session_ended');
      await rejectsUnchanged(s.id, () => sessions.items.clear(s.id), 'session_ended');
      // Reading stays possible.
      expect((await sessions.items.list(s.id)).items).toHaveLength(1);
    });

    it('rejects a missing session with session_not_found', async () => {
      await rejectsWith(sessions.terminate(uuid()), 'session_not_found');
    });
  });

  describe('purge and batch delete', () => {
    it('purge deletes the session and its items and writes session.deleted', async () => {
      const s = await sessions.create();
      await sessions.items.append(s.id, [
        { role: 'user', content: 'a' },
        { role: 'assistant', content: 'b' },
      ]);
      expect(await sessions.purge(s.id)).toBe(true);
      await rejectsWith(sessions.get(s.id), 'session_not_found');
      expect(await storedVersion(s.id)).toBeNull();
      expect(await storedItemCount(s.id)).toBe(0);
      expect((await outboxEvents(s.id)).map((e) => e.type).at(-1)).toBe('session.deleted');
      const before = await outboxCount();
      expect(await sessions.purge(s.id)).toBe(false);
      expect(await outboxCount()).toBe(before);
    });

    it('deleteMany terminates the sessions found and reports the ids not found', async () => {
      const a = await sessions.create();
      const b = await sessions.create();
      const missing = uuid();
      const result = await sessions.deleteMany([a.id, missing, b.id], { reason: 'cleanup' });
      expect([...result.deleted].sort()).toEqual([a.id, b.id].sort());
      expect(result.notFound).toEqual([missing]);
      for (const id of [a.id, b.id]) {
        const s = await sessions.get(id);
        expect(s).toMatchObject({ status: 'terminated', endReason: 'cleanup', version: 2 });
        expect((await outboxEvents(id)).map((e) => e.type)).toContain('session.terminated');
      }
    });

    it('deleteMany with purge removes the sessions found and reports the ids not found', async () => {
      const a = await sessions.create();
      await sessions.items.append(a.id, [{ role: 'user', content: 'x' }]);
      const b = await sessions.create();
      const missing = uuid();
      const result = await sessions.deleteMany([a.id, b.id, missing], { purge: true });
      expect([...result.deleted].sort()).toEqual([a.id, b.id].sort());
      expect(result.notFound).toEqual([missing]);
      expect(await sessions.getMany([a.id, b.id])).toEqual([]);
      expect(await storedItemCount(a.id)).toBe(0);
      expect((await outboxEvents(a.id)).map((e) => e.type).at(-1)).toBe('session.deleted');
    });

    it('deleteMany validates its ids', async () => {
      const before = await outboxCount();
      await rejectsWith(sessions.deleteMany([]), 'validation_failed');
      await rejectsWith(sessions.deleteMany(['no pe']), 'validation_failed');
      await rejectsWith(
        sessions.deleteMany(Array.from({ length: sessions.config.limits.batchSize + 1 }, uuid)),
        'limit_exceeded',
      );
      expect(await outboxCount()).toBe(before);
    });
  });

  describe('list', () => {
    it('filters by user_id', async () => {
      const u1 = user();
      const u2 = user();
      const mine = [await sessions.create({ userId: u1 }), await sessions.create({ userId: u1 })];
      await sessions.create({ userId: u2 });
      const page = await sessions.list({ userId: u1 });
      expect(page.items.map((s) => s.id).sort()).toEqual(mine.map((s) => s.id).sort());
      expect(page.nextCursor).toBeNull();
    });

    it('filters by status, including sessions that ended', async () => {
      const u = user();
      const idle = await sessions.create({ userId: u });
      const init = await sessions.create({ userId: u, status: 'initializing' });
      const ended = await sessions.create({ userId: u });
      await sessions.terminate(ended.id);
      const ids = async (status: Session['status']) =>
        (await sessions.list({ userId: u, status })).items.map((s) => s.id);
      expect(await ids('idle')).toEqual([idle.id]);
      expect(await ids('initializing')).toEqual([init.id]);
      expect(await ids('terminated')).toEqual([ended.id]);
      expect(await ids('active')).toEqual([]);
    });

    it('filters by updated_after', async () => {
      const u = user();
      const old = await sessions.create({ userId: u });
      const a = await sessions.create({ userId: u });
      const b = await sessions.create({ userId: u });
      await sleep(20);
      const boundary = await sessions.update(a.id, { title: 'boundary' });
      await sleep(20);
      await sessions.update(b.id, { title: 'later' });
      const page = await sessions.list({ userId: u, updatedAfter: boundary.updatedAt });
      const ids = page.items.map((s) => s.id);
      expect(ids).toContain(b.id);
      expect(ids).not.toContain(old.id);
      // Strictly after: the session whose updated_at is the boundary itself is not repeated.
      expect(ids).not.toContain(a.id);
      const none = await sessions.list({ userId: u, updatedAfter: new Date(Date.now() + 3_600_000).toISOString() });
      expect(none.items).toEqual([]);
    });

    it('searches by id prefix or a part of the title, case-insensitively, with no wildcards', async () => {
      const u = user();
      const tag = `Tag${uuid().slice(0, 8)}`;
      const a = await sessions.create({ userId: u, title: `Refund for ${tag} order` });
      const b = await sessions.create({ userId: u, title: `50%_off ${tag}` });
      const c = await sessions.create({ userId: u, title: 'unrelated' });
      const ids = async (search: string, filter: { userId?: string } = { userId: u }) =>
        (await sessions.list({ ...filter, search })).items.map((s) => s.id).sort();
      expect(await ids(tag.toLowerCase())).toEqual([a.id, b.id].sort());
      expect(await ids(`refund for ${tag.toUpperCase()}`)).toEqual([a.id]);
      // % and _ are characters, not patterns.
      expect(await ids('%_off')).toEqual([b.id]);
      expect(await ids('%')).toEqual([b.id]);
      expect(await ids('_')).toEqual([b.id]);
      // An id: whole, a prefix, in capitals; a part from its middle is not a match.
      expect(await ids(c.id)).toEqual([c.id]);
      // Through the counter bits (unique within a process) and random ones: c's alone, even if
      // a, b and c were created in the same millisecond.
      expect(await ids(c.id.slice(0, 23).toUpperCase())).toEqual([c.id]);
      // The creation millisecond alone may be shared with a and b; every match has the prefix.
      const sameMs = await ids(c.id.slice(0, 13).toUpperCase());
      expect(sameMs).toContain(c.id);
      expect(sameMs.every((id) => id.startsWith(c.id.slice(0, 13)))).toBe(true);
      expect(await ids(c.id.slice(10))).toEqual([]);
      // Without the user filter (the other statement), combined with a status.
      expect(await ids(tag, {})).toEqual([a.id, b.id].sort());
      await sessions.terminate(b.id);
      expect((await sessions.list({ search: tag, status: 'terminated' })).items.map((s) => s.id)).toEqual([b.id]);
      // Empty is no search; an overlong one is refused.
      expect(await ids('')).toEqual([a.id, b.id, c.id].sort());
      await rejectsWith(sessions.list({ search: 'x'.repeat(257) }), 'validation_failed');
    });

    it('pages with a keyset cursor across several pages with no gap or duplicate', async () => {
      const u = user();
      // Created concurrently, so several may share a creation time; the id breaks the tie.
      const created = await Promise.all(Array.from({ length: 23 }, () => sessions.create({ userId: u })));
      const seen: Session[] = [];
      let cursor: string | undefined;
      let pages = 0;
      do {
        const page = await sessions.list({ userId: u, limit: 5, ...(cursor ? { cursor } : {}) });
        seen.push(...page.items);
        pages++;
        if (pages === 1) {
          // Sessions created while paging are newer than the cursor: they do not shift pages.
          await Promise.all(Array.from({ length: 3 }, () => sessions.create({ userId: u })));
        }
        cursor = page.nextCursor ?? undefined;
        expect(page.items.length).toBe(cursor ? 5 : 3);
      } while (cursor && pages < 20);
      expect(pages).toBe(5);
      const ids = seen.map((s) => s.id);
      expect(new Set(ids).size).toBe(ids.length);
      expect([...ids].sort()).toEqual(created.map((s) => s.id).sort());
      for (let i = 1; i < seen.length; i++) {
        expect(Date.parse(seen[i - 1]?.createdAt ?? '')).toBeGreaterThanOrEqual(Date.parse(seen[i]?.createdAt ?? ''));
      }
    });

    it('rejects a cursor it did not issue with invalid_cursor', async () => {
      const forged = Buffer.from(JSON.stringify({ t: 'x', i: 'y' })).toString('base64url');
      for (const cursor of ['not a cursor!', forged, 'e30', Buffer.from('[1,2]').toString('base64url')]) {
        await rejectsWith(sessions.list({ cursor }), 'invalid_cursor');
      }
    });

    it('rejects a page limit outside 1..max with validation_failed', async () => {
      await rejectsWith(sessions.list({ limit: sessions.config.limits.maxPageSize + 1 }), 'validation_failed');
      await rejectsWith(sessions.list({ limit: 0 }), 'validation_failed');
      await rejectsWith(sessions.list({ limit: 2.5 }), 'validation_failed');
      const page = await sessions.list({ limit: sessions.config.limits.maxPageSize });
      expect(page.items.length).toBeLessThanOrEqual(sessions.config.limits.maxPageSize);
    });

    it('rejects an updated_after that is not a date', async () => {
      await rejectsWith(sessions.list({ updatedAfter: 'yesterday-ish' }), 'validation_failed');
    });
  });

  describe('fork', () => {
    it('creates a child with parent_session_id, the settings and a copy of the items under new ids', async () => {
      const source = await sessions.create({
        userId: user(),
        model: 'm1',
        title: 'source',
        systemPrompt: 'sys',
        metadata: { a: 1 },
      });
      const appended = await sessions.items.append(source.id, [
        { role: 'user', content: 'one' },
        { role: 'assistant', type: 'tool_call', content: { name: 'ls' } },
        { role: 'tool', type: 'tool_result', content: { ok: true } },
      ]);
      const before = await outboxCount();
      const fork = await sessions.fork(source.id, { title: 'fork' });
      expect(fork.id).not.toBe(source.id);
      expect(isUuid(fork.id)).toBe(true);
      expect(fork).toMatchObject({
        parentSessionId: source.id,
        userId: source.userId,
        model: 'm1',
        systemPrompt: 'sys',
        title: 'fork',
        metadata: { a: 1 },
        version: 1,
      });
      expect(await outboxCount()).toBe(before + 1);
      expect((await outboxEvents(fork.id)).map((e) => e.type)).toEqual(['session.created']);

      const copied = (await sessions.items.list(fork.id)).items;
      const strip = (i: SessionItem) => ({ seq: i.seq, role: i.role, type: i.type, content: i.content });
      expect(copied.map(strip)).toEqual(appended.items.map(strip));
      for (const item of copied) {
        expect(item.sessionId).toBe(fork.id);
        expect(appended.items.map((i) => i.id)).not.toContain(item.id);
      }

      // The two histories are independent from here on.
      await sessions.items.append(fork.id, [{ role: 'user', content: 'only in the fork' }]);
      expect((await sessions.items.list(source.id)).items).toHaveLength(3);
      expect((await sessions.items.list(fork.id)).items).toHaveLength(4);
    });

    it('rejects a missing source with session_not_found', async () => {
      const before = await outboxCount();
      await rejectsWith(sessions.fork(uuid()), 'session_not_found');
      expect(await outboxCount()).toBe(before);
    });
  });

  describe('getMany and getOrCreate', () => {
    it('getMany returns the sessions found, in the order asked', async () => {
      const a = await sessions.create();
      const b = await sessions.create();
      const found = await sessions.getMany([b.id, uuid(), a.id]);
      expect(found.map((s) => s.id)).toEqual([b.id, a.id]);
      await rejectsWith(sessions.getMany([]), 'validation_failed');
      await rejectsWith(sessions.getMany(['x/y']), 'validation_failed');
    });

    it('getOrCreate creates once and then returns the existing session', async () => {
      const id = uuid();
      const first = await sessions.getOrCreate(id, { title: 'made' });
      expect(first).toMatchObject({ id, title: 'made', version: 1 });
      const before = await outboxCount();
      const second = await sessions.getOrCreate(id, { title: 'ignored' });
      expect(second).toMatchObject({ id, title: 'made', version: 1 });
      expect(await outboxCount()).toBe(before);
    });

    it('getOrCreate called concurrently creates exactly one session', async () => {
      const id = uuid();
      const results = await Promise.all(Array.from({ length: 10 }, () => sessions.getOrCreate(id)));
      expect(new Set(results.map((s) => s.id))).toEqual(new Set([id]));
      expect((await outboxEvents(id)).map((e) => e.type)).toEqual(['session.created']);
    });
  });

  describe('items', () => {
    it('appends one or many with increasing seq and new ids, and writes item.added', async () => {
      const s = await sessions.create();
      const one = await sessions.items.append(s.id, [{ role: 'user', content: 'hello' }]);
      expect(one.items).toHaveLength(1);
      expect(one.items[0]).toMatchObject({ seq: 1, role: 'user', type: 'message', content: 'hello', sessionId: s.id });
      expect(isUuid(one.items[0]?.id ?? '')).toBe(true);
      expect(one.session.version).toBe(2);
      const many = await sessions.items.append(s.id, [
        { role: 'assistant', content: { text: 'hi' } },
        { role: 'user', content: ['a', 1, null] },
      ]);
      expect(many.items.map((i) => i.seq)).toEqual([2, 3]);
      expect(many.items[1]?.content).toEqual(['a', 1, null]);
      expect(many.session.version).toBe(3);
      const added = (await outboxEvents(s.id)).filter((e) => e.type === 'item.added');
      expect(added.map((e) => e.payload.count)).toEqual([1, 2]);
    });

    it('lists with a cursor across pages with no gap or duplicate', async () => {
      const s = await sessions.create();
      const items: NewItem[] = Array.from({ length: 12 }, (_, i) => ({ role: i % 2 ? 'assistant' : 'user', content: { i } }));
      await sessions.items.append(s.id, items);
      const seqs: number[] = [];
      let cursor: string | undefined;
      let pages = 0;
      do {
        const page = await sessions.items.list(s.id, { limit: 5, ...(cursor ? { cursor } : {}) });
        seqs.push(...page.items.map((i) => i.seq));
        cursor = page.nextCursor ?? undefined;
        pages++;
      } while (cursor && pages < 10);
      expect(pages).toBe(3);
      expect(seqs).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
    });

    it('lists the last N turns without splitting a tool call from its result', async () => {
      const s = await sessions.create();
      const conversation: NewItem[] = [
        { role: 'user', content: 'q1' },
        { role: 'assistant', type: 'tool_call', content: { id: 't1', name: 'search' } },
        { role: 'tool', type: 'tool_result', content: { id: 't1', result: 'r1' } },
        { role: 'assistant', content: 'a1' },
        { role: 'user', content: 'q2' },
        { role: 'assistant', type: 'tool_call', content: { id: 't2', name: 'read' } },
        { role: 'user', type: 'tool_result', content: { id: 't2', result: 'r2' } },
        { role: 'assistant', type: 'tool_call', content: { id: 't3', name: 'write' } },
        { role: 'user', type: 'tool_result', content: { id: 't3', result: 'r3' } },
        { role: 'assistant', content: 'a2' },
      ];
      await sessions.items.append(s.id, conversation);
      const seqs = async (lastTurns: number) => (await sessions.items.list(s.id, { lastTurns })).items.map((i) => i.seq);
      expect(await seqs(1)).toEqual([5, 6, 7, 8, 9, 10]);
      expect(await seqs(2)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      expect(await seqs(9)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      for (const lastTurns of [1, 2, 3]) {
        const { items } = await sessions.items.list(s.id, { lastTurns });
        expect(items[0]).toMatchObject({ role: 'user', type: 'message' });
        const calls = items.filter((i) => i.type === 'tool_call').map((i) => (i.content as { id: string }).id);
        const results = items.filter((i) => i.type === 'tool_result').map((i) => (i.content as { id: string }).id);
        expect(results).toEqual(calls);
      }
      await rejectsWith(sessions.items.list(s.id, { lastTurns: 0 }), 'validation_failed');
    });

    it('pops the last item, never reusing its seq', async () => {
      const s = await sessions.create();
      await sessions.items.append(s.id, [
        { role: 'user', content: 'a' },
        { role: 'assistant', content: 'b' },
      ]);
      const popped = await sessions.items.pop(s.id);
      expect(popped.item).toMatchObject({ seq: 2, content: 'b' });
      expect(popped.session.version).toBe(3);
      expect((await sessions.items.list(s.id)).items.map((i) => i.content)).toEqual(['a']);
      const next = await sessions.items.append(s.id, [{ role: 'assistant', content: 'c' }]);
      expect(next.items[0]?.seq).toBeGreaterThan(2);
    });

    it('pops nothing from an empty history', async () => {
      const s = await sessions.create();
      expect((await sessions.items.pop(s.id)).item).toBeNull();
    });

    it('clears the history', async () => {
      const s = await sessions.create();
      await sessions.items.append(s.id, [
        { role: 'user', content: 'a' },
        { role: 'assistant', content: 'b' },
        { role: 'user', content: 'c' },
      ]);
      const cleared = await sessions.items.clear(s.id);
      expect(cleared.removed).toBe(3);
      expect((await sessions.items.list(s.id)).items).toEqual([]);
      expect(await storedItemCount(s.id)).toBe(0);
    });

    it('rejects bad appends and changes nothing', async () => {
      const s = await sessions.create();
      await rejectsUnchanged(s.id, () => sessions.items.append(s.id, []), 'validation_failed');
      await rejectsUnchanged(s.id, () => sessions.items.append(s.id, [{ role: '', content: 'x' }]), 'validation_failed');
      await rejectsUnchanged(
        s.id,
        () => sessions.items.append(s.id, [{ role: 'user', content: 'ok' }, { role: 'user' } as NewItem]),
        'validation_failed',
      );
    });

    it('reports a missing session and a foreign cursor', async () => {
      await rejectsWith(sessions.items.list(uuid()), 'session_not_found');
      await rejectsWith(sessions.items.append(uuid(), [{ role: 'user', content: 'x' }]), 'session_not_found');
      const s = await sessions.create();
      await rejectsWith(sessions.items.list(s.id, { cursor: 'bogus!' }), 'invalid_cursor');
      await rejectsWith(sessions.items.list(s.id, { cursor: Buffer.from('{"s":"1"}').toString('base64url') }), 'invalid_cursor');
    });

    it('appends items without a role (stored as null) and without a client id', async () => {
      const s = await sessions.create();
      const call = { type: 'function_call', callId: 'c1', name: 'search', arguments: '{"q":"x"}' };
      const { items } = await sessions.items.append(s.id, [
        { role: 'user', content: 'find x' },
        { type: 'function_call', content: call },
        { role: null, type: 'reasoning', content: { summary: [] } },
        { content: 'no role, no type' },
      ]);
      expect(items.map((i) => [i.role, i.type, i.clientId])).toEqual([
        ['user', 'message', null],
        [null, 'function_call', null],
        [null, 'reasoning', null],
        [null, 'message', null],
      ]);
      expect((await sessions.items.list(s.id)).items.map((i) => i.content)).toEqual(['find x', call, { summary: [] }, 'no role, no type']);
      // A turn still starts at a user message.
      expect((await sessions.items.list(s.id, { lastTurns: 1 })).items.map((i) => i.seq)).toEqual([1, 2, 3, 4]);
    });

    it('answers a re-append of the same client id and body with the stored item and writes nothing', async () => {
      const s = await sessions.create();
      const item: NewItem = { clientId: 'msg_1', role: 'user', content: { parts: [{ type: 'text', text: 'hi' }] } };
      const first = await sessions.items.append(s.id, [item]);
      expect(first.items[0]).toMatchObject({ seq: 1, clientId: 'msg_1', role: 'user', type: 'message' });
      const version = await storedVersion(s.id);
      const events = await outboxCount();
      // The same body, also with the default type spelled out and keys in another order.
      const again = await sessions.items.append(s.id, [item]);
      const spelled = await sessions.items.append(s.id, [
        { content: { parts: [{ text: 'hi', type: 'text' }] }, type: 'message', role: 'user', clientId: 'msg_1' },
      ]);
      expect(again.items).toEqual(first.items);
      expect(spelled.items).toEqual(first.items);
      expect(again.session.version).toBe(version);
      expect(await storedVersion(s.id)).toBe(version);
      expect(await storedItemCount(s.id)).toBe(1);
      expect(await outboxCount()).toBe(events);
    });

    it('replaces an item whose client id is stored with another body in place: same seq and id, new content', async () => {
      const s = await sessions.create();
      const stored = await sessions.items.append(s.id, [
        { clientId: 'u1', role: 'user', content: 'question' },
        { clientId: 'a1', role: 'assistant', content: { parts: ['Thinking'] } },
      ]);
      const replaced = await sessions.items.append(s.id, [{ clientId: 'a1', role: 'assistant', content: { parts: ['Thinking', 'Answer'] } }]);
      expect(replaced.items[0]).toMatchObject({
        id: stored.items[1]?.id,
        seq: 2,
        clientId: 'a1',
        content: { parts: ['Thinking', 'Answer'] },
        createdAt: stored.items[1]?.createdAt,
      });
      expect(replaced.session.version).toBe(stored.session.version + 1);
      expect((await sessions.items.list(s.id)).items.map((i) => [i.seq, i.content])).toEqual([
        [1, 'question'],
        [2, { parts: ['Thinking', 'Answer'] }],
      ]);
      // A role and a type are part of the body too; dropping the role replaces it with none.
      const retyped = await sessions.items.append(s.id, [{ clientId: 'a1', type: 'reasoning', content: 'r' }]);
      expect(retyped.items[0]).toMatchObject({ seq: 2, role: null, type: 'reasoning', content: 'r' });
      expect(await storedItemCount(s.id)).toBe(2);
      const updated = (await outboxEvents(s.id)).filter((e) => e.type === 'item.updated');
      expect(updated.map((e) => e.payload)).toEqual([
        { count: 1, seqs: [2], version: replaced.session.version },
        { count: 1, seqs: [2], version: retyped.session.version },
      ]);
      // The next new item still takes the next seq.
      expect((await sessions.items.append(s.id, [{ role: 'user', content: 'next' }])).items[0]?.seq).toBe(3);
    });

    it('takes a batch mixing new, identical and replaced items, answering each in the batch order', async () => {
      const s = await sessions.create();
      await sessions.items.append(s.id, [
        { clientId: 'a', role: 'user', content: 'a' },
        { clientId: 'b', role: 'assistant', content: 'b' },
      ]);
      const before = (await outboxEvents(s.id)).length;
      const mixed = await sessions.items.append(s.id, [
        { clientId: 'c', role: 'user', content: 'c' },
        { clientId: 'b', role: 'assistant', content: 'b, longer' },
        { clientId: 'a', role: 'user', content: 'a' },
        { role: 'assistant', content: 'd' },
      ]);
      expect(mixed.items.map((i) => [i.clientId, i.seq, i.content])).toEqual([
        ['c', 3, 'c'],
        ['b', 2, 'b, longer'],
        ['a', 1, 'a'],
        [null, 4, 'd'],
      ]);
      expect(mixed.session.version).toBe(3);
      expect((await sessions.items.list(s.id)).items.map((i) => i.content)).toEqual(['a', 'b, longer', 'c', 'd']);
      const events = (await outboxEvents(s.id)).slice(before);
      expect(events).toEqual([
        { type: 'item.added', payload: { count: 2, first_seq: 3, last_seq: 4, version: 3 } },
        { type: 'item.updated', payload: { count: 1, seqs: [2], version: 3 } },
      ]);
      // Only identical items: the stored ones, nothing written.
      const same = await sessions.items.append(s.id, [
        { clientId: 'c', role: 'user', content: 'c' },
        { clientId: 'a', role: 'user', content: 'a' },
      ]);
      expect(same.items.map((i) => i.seq)).toEqual([3, 1]);
      expect(same.session.version).toBe(3);
      expect((await outboxEvents(s.id)).length).toBe(before + 2);
    });

    it('rejects a client id twice in one batch, or empty, or too long, and changes nothing', async () => {
      const s = await sessions.create();
      await sessions.items.append(s.id, [{ clientId: 'x', role: 'user', content: 'x' }]);
      const twice = [
        { clientId: 'y', role: 'user', content: '1' },
        { clientId: 'y', role: 'user', content: '2' },
      ];
      const err = await rejectsUnchanged(s.id, () => sessions.items.append(s.id, twice), 'validation_failed');
      expect(err.details).toMatchObject({ field: 'client_id' });
      await rejectsUnchanged(s.id, () => sessions.items.append(s.id, [{ clientId: '', content: 'x' }]), 'validation_failed');
      await rejectsUnchanged(s.id, () => sessions.items.append(s.id, [{ clientId: 'z'.repeat(257), content: 'x' }]), 'validation_failed');
      await rejectsUnchanged(s.id, () => sessions.items.append(s.id, [{ clientId: 7, content: 'x' } as unknown as NewItem]), 'validation_failed');
      const longest = await sessions.items.append(s.id, [{ clientId: 'z'.repeat(256), content: 'x' }]);
      expect(longest.items[0]?.clientId).toHaveLength(256);
    });

    it('keeps client ids per session: the same one in another session is another item', async () => {
      const a = await sessions.create();
      const b = await sessions.create();
      const inA = await sessions.items.append(a.id, [{ clientId: 'm1', role: 'user', content: 'in a' }]);
      const inB = await sessions.items.append(b.id, [{ clientId: 'm1', role: 'user', content: 'in b' }]);
      expect(inB.items[0]?.id).not.toBe(inA.items[0]?.id);
      expect((await sessions.items.list(a.id)).items.map((i) => i.content)).toEqual(['in a']);
    });

    it('lists newest first with order desc, the cursor going on towards older items', async () => {
      const s = await sessions.create();
      await sessions.items.append(s.id, Array.from({ length: 12 }, (_, i) => ({ role: i % 2 ? 'assistant' : 'user', content: i + 1 })));
      const latest = await sessions.items.list(s.id, { order: 'desc', limit: 3 });
      expect(latest.items.map((i) => i.seq)).toEqual([12, 11, 10]);
      // The latest N in chronological order, as the OpenAI Agents SDK's getItems(limit) wants them.
      expect(latest.items.reverse().map((i) => i.content)).toEqual([10, 11, 12]);
      const seqs: number[] = [];
      let cursor: string | undefined;
      let pages = 0;
      do {
        const page = await sessions.items.list(s.id, { order: 'desc', limit: 5, ...(cursor ? { cursor } : {}) });
        seqs.push(...page.items.map((i) => i.seq));
        cursor = page.nextCursor ?? undefined;
        pages++;
      } while (cursor && pages < 10);
      expect(pages).toBe(3);
      expect(seqs).toEqual(Array.from({ length: 12 }, (_, i) => 12 - i));
      // Items appended between pages do not disturb a newest-first walk already going.
      const first = await sessions.items.list(s.id, { order: 'desc', limit: 6 });
      await sessions.items.append(s.id, [{ role: 'user', content: 13 }]);
      const rest = await sessions.items.list(s.id, { order: 'desc', limit: 6, cursor: first.nextCursor ?? '' });
      expect(rest.items.map((i) => i.seq)).toEqual([6, 5, 4, 3, 2, 1]);
      expect(rest.nextCursor).toBeNull();
      // The last turns, newest first.
      expect((await sessions.items.list(s.id, { order: 'desc', lastTurns: 2 })).items.map((i) => i.seq)).toEqual([13, 12, 11]);
      // A cursor continues only in the order it was issued for.
      const ascCursor = (await sessions.items.list(s.id, { limit: 2 })).nextCursor ?? '';
      await rejectsWith(sessions.items.list(s.id, { order: 'desc', cursor: ascCursor }), 'invalid_cursor');
      await rejectsWith(sessions.items.list(s.id, { cursor: first.nextCursor ?? '' }), 'invalid_cursor');
      await rejectsWith(sessions.items.list(s.id, { order: 'sideways' as 'asc' }), 'validation_failed');
      const empty = await sessions.create();
      expect(await sessions.items.list(empty.id, { order: 'desc' })).toEqual({ items: [], nextCursor: null });
    });

    it('copies client ids into a fork, so re-sent items are found there', async () => {
      const s = await sessions.create();
      await sessions.items.append(s.id, [{ clientId: 'k', role: 'user', content: 'kept' }]);
      const fork = await sessions.fork(s.id);
      const again = await sessions.items.append(fork.id, [{ clientId: 'k', role: 'user', content: 'kept' }]);
      expect(again.items[0]).toMatchObject({ seq: 1, clientId: 'k' });
      expect(await storedItemCount(fork.id)).toBe(1);
    });
  });

  describe('limits', () => {
    const tooBig = () => ({ blob: 'x'.repeat(sessions.config.limits.metadataBytes) });

    it('rejects metadata over the limit on create with limit_exceeded', async () => {
      const id = uuid();
      const before = await outboxCount();
      await rejectsWith(sessions.create({ id, metadata: tooBig() }), 'limit_exceeded');
      expect(await storedVersion(id)).toBeNull();
      expect(await outboxCount()).toBe(before);
    });

    it('rejects metadata over the limit on update and changes nothing', async () => {
      const s = await sessions.create();
      await rejectsUnchanged(s.id, () => sessions.update(s.id, { metadata: tooBig() }), 'limit_exceeded');
    });

    it('rejects an item over the limit and changes nothing', async () => {
      const s = await sessions.create();
      const content = 'y'.repeat(sessions.config.limits.itemBytes);
      await rejectsUnchanged(s.id, () => sessions.items.append(s.id, [{ role: 'user', content }]), 'limit_exceeded');
    });

    it('rejects too many items in one append and changes nothing', async () => {
      const s = await sessions.create();
      const items = Array.from({ length: sessions.config.limits.itemsPerAppend + 1 }, () => ({ role: 'user', content: 'x' }));
      await rejectsUnchanged(s.id, () => sessions.items.append(s.id, items), 'limit_exceeded');
      const max = await sessions.items.append(s.id, items.slice(1));
      expect(max.items).toHaveLength(sessions.config.limits.itemsPerAppend);
    });

    it('rejects text fields over the limit', async () => {
      const s = await sessions.create();
      const long = 'z'.repeat(sessions.config.limits.textLength + 1);
      await rejectsUnchanged(s.id, () => sessions.update(s.id, { title: long }), 'limit_exceeded');
      await rejectsUnchanged(s.id, () => sessions.terminate(s.id, long), 'limit_exceeded');
    });
  });

  describe('expiry', () => {
    it('reads a session past its TTL as expired and rejects writes with session_ended', async () => {
      const u = user();
      const s = await sessions.create({ userId: u, ttlSeconds: 1 });
      expect(s.status).toBe('idle');
      await sleep(1_500);
      expect((await sessions.get(s.id)).status).toBe('expired');
      expect((await sessions.getMany([s.id]))[0]?.status).toBe('expired');
      expect((await sessions.list({ userId: u })).items.map((x) => x.status)).toEqual(['expired']);
      expect((await sessions.list({ userId: u, status: 'expired' })).items.map((x) => x.id)).toEqual([s.id]);
      expect((await sessions.list({ userId: u, status: 'idle' })).items).toEqual([]);
      await rejectsUnchanged(s.id, () => sessions.update(s.id, { title: 'late' }), 'session_ended');
      await rejectsUnchanged(s.id, () => sessions.touch(s.id), 'session_ended');
      await rejectsUnchanged(s.id, () => sessions.incrementCounters(s.id, { totalTurns: 1 }), 'session_ended');
      await rejectsUnchanged(s.id, () => sessions.items.append(s.id, [{ role: 'user', content: 'x' }]), 'session_ended');
      // An expired session may still be terminated.
      const t = await sessions.terminate(s.id, 'cleanup');
      expect(t.status).toBe('terminated');
    });

    it('expires an idle session at its idle deadline, but not one with a run going', async () => {
      const idle = await sessions.create({ idleTimeoutSeconds: 1 });
      const busy = await sessions.create({ idleTimeoutSeconds: 1 });
      await sessions.update(busy.id, { status: 'active' });
      await sleep(1_500);
      expect((await sessions.get(idle.id)).status).toBe('expired');
      expect((await sessions.get(busy.id)).status).toBe('active');
      expect((await sessions.update(busy.id, { status: 'idle' })).status).toBe('idle');
    });
  });

  describe('tenants', () => {
    it("keeps one tenant's sessions invisible to another", async () => {
      const a = { tenant: 'tenant-a' };
      const b = { tenant: 'tenant-b' };
      const u = user();
      const s = await sessions.create({ userId: u, title: 'secret' }, a);
      expect(s.tenantId).toBe('tenant-a');
      expect((await sessions.get(s.id, a)).title).toBe('secret');

      await rejectsWith(sessions.get(s.id, b), 'session_not_found');
      await rejectsWith(sessions.get(s.id), 'session_not_found');
      expect(await sessions.find(s.id, b)).toBeNull();
      expect(await sessions.exists(s.id, b)).toBe(false);
      expect(await sessions.getMany([s.id], b)).toEqual([]);
      expect((await sessions.list({ userId: u }, b)).items).toEqual([]);
      expect((await sessions.list({ userId: u }, a)).items.map((x) => x.id)).toEqual([s.id]);
      await rejectsWith(sessions.items.list(s.id, {}, b), 'session_not_found');
      await rejectsWith(sessions.fork(s.id, {}, b), 'session_not_found');

      await rejectsUnchanged(s.id, () => sessions.update(s.id, { title: 'stolen' }, b), 'session_not_found');
      await rejectsUnchanged(s.id, () => sessions.touch(s.id, b), 'session_not_found');
      await rejectsUnchanged(s.id, () => sessions.incrementCounters(s.id, { totalTurns: 1 }, b), 'session_not_found');
      await rejectsUnchanged(s.id, () => sessions.terminate(s.id, 'x', b), 'session_not_found');
      await rejectsUnchanged(s.id, () => sessions.items.append(s.id, [{ role: 'user', content: 'x' }], b), 'session_not_found');
      await rejectsUnchanged(s.id, () => sessions.modify(s.id, () => ({ title: 'x' }), b), 'session_not_found');
      expect(await sessions.purge(s.id, b)).toBe(false);
      expect(await sessions.deleteMany([s.id], {}, b)).toEqual({ deleted: [], notFound: [s.id] });
      expect(await sessions.deleteMany([s.id], { purge: true }, b)).toEqual({ deleted: [], notFound: [s.id] });

      const still = await sessions.get(s.id, a);
      expect(still).toMatchObject({ title: 'secret', status: 'idle', version: 1 });
    });
  });
}
