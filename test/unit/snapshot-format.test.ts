/**
 * The Redis snapshot body (src/adapters/redis/snapshot-format.ts): the array layout gives back
 * every field of the session it was written from, in SNAPSHOT_FIELDS order; the previous
 * release's object body is still read; a body without a revision is legacy (retired); a
 * marker, no value, or an array this release cannot read is a plain miss (not retired).
 */
import { describe, expect, it } from 'vitest';
import { DecodedSnapshots, decodeSnapshot, encodeSnapshot, SNAPSHOT_FIELDS, SNAPSHOT_LAYOUT } from '../../src/adapters/redis/snapshot-format.js';
import type { Session } from '../../src/core/types.js';
import { sessionSnapshot } from '../setup/sessions.js';

/**
 * Every field set, none to its default, and no two fields holding the same value: a field read
 * from another field's index cannot come out equal.
 */
function everyFieldDistinct(): Session {
  return sessionSnapshot('sess-id', 41, {
    tenantId: 'tenant-t',
    userId: 'user-u',
    orgId: 'org-o',
    status: 'waiting_input',
    model: 'model-m',
    title: 'title-t',
    systemPrompt: 'prompt-p',
    workspacePath: '/workspace/w',
    mcpClientIds: ['mcp-a', 'mcp-b'],
    parentSessionId: 'parent-p',
    metadata: { kind: 'meta', nested: { list: [1, 'two', null, { deep: true }], n: 3.5 }, flag: false },
    totalTurns: 7,
    messageCount: 11,
    totalCostUsd: 0.125,
    inputTokens: 1_301,
    outputTokens: 1_709,
    version: 41,
    revision: 13,
    ttlSeconds: 86_401,
    idleTimeoutSeconds: 1_799,
    createdAt: '2026-01-02T03:04:05.006Z',
    updatedAt: '2026-01-02T03:04:05.107Z',
    lastActiveAt: '2026-01-02T03:04:05.208Z',
    expiresAt: '2026-01-03T03:04:05.309Z',
    endedAt: '2026-01-02T03:04:05.410Z',
    endReason: 'reason-r',
  });
}

describe('snapshot format', () => {
  it('the session is made of distinct values only (so the round trip below would catch two swapped indices)', () => {
    const s = everyFieldDistinct();
    const values = SNAPSHOT_FIELDS.map((f) => JSON.stringify(s[f]));
    expect(new Set(values).size).toBe(SNAPSHOT_FIELDS.length);
    expect(values).not.toContain('null');
    // Every field of the session is in the list, and nothing else.
    expect(Object.keys(s).sort()).toEqual([...SNAPSHOT_FIELDS].sort());
  });

  it('writes layout 2 exactly as it was first released: instances of different releases read each other’s values', () => {
    // Pinned text, not derived from SNAPSHOT_FIELDS: a change of order, name or count under
    // the same layout number would make mixed fleets read fields in the wrong places. Such a
    // change needs a new layout number (and this fixture stays, for reading layout 2).
    const pinned =
      '[2,"sess-id","tenant-t","user-u","org-o","waiting_input","model-m","title-t","prompt-p","/workspace/w",["mcp-a","mcp-b"],"parent-p",' +
      '{"kind":"meta","nested":{"list":[1,"two",null,{"deep":true}],"n":3.5},"flag":false},7,11,0.125,1301,1709,41,13,86401,1799,' +
      '"2026-01-02T03:04:05.006Z","2026-01-02T03:04:05.107Z","2026-01-02T03:04:05.208Z","2026-01-03T03:04:05.309Z","2026-01-02T03:04:05.410Z","reason-r"]';
    expect(encodeSnapshot(everyFieldDistinct())).toBe(pinned);
    expect(decodeSnapshot(`41:${pinned}`).session).toEqual(everyFieldDistinct());
  });

  it('writes layout 1, the object, when asked (a fleet that still runs releases before layout 2)', () => {
    const s = everyFieldDistinct();
    expect(encodeSnapshot(s, 1)).toBe(JSON.stringify(s));
    expect(decodeSnapshot(`41:${encodeSnapshot(s, 1)}`).session).toEqual(s);
  });

  it('writes a JSON array: the layout, then one value per field in SNAPSHOT_FIELDS order', () => {
    const s = everyFieldDistinct();
    const body = JSON.parse(encodeSnapshot(s)) as unknown[];
    expect(Array.isArray(body)).toBe(true);
    expect(body).toHaveLength(SNAPSHOT_FIELDS.length + 1);
    expect(body[0]).toBe(SNAPSHOT_LAYOUT);
    expect(body.slice(1)).toEqual(SNAPSHOT_FIELDS.map((f) => s[f]));
  });

  it('reads back every field of the session it wrote, its keys in SNAPSHOT_FIELDS order', () => {
    const s = everyFieldDistinct();
    const decoded = decodeSnapshot(`7:${encodeSnapshot(s)}`);
    expect(decoded.legacy).toBe(false);
    expect(decoded.session).toStrictEqual(s);
    expect(Object.keys(decoded.session as Session)).toEqual([...SNAPSHOT_FIELDS]);
  });

  it('reads back the nulls and empty values of a fresh session', () => {
    const s = sessionSnapshot('fresh', 1);
    const decoded = decodeSnapshot(`1:${encodeSnapshot(s)}`);
    expect(decoded).toStrictEqual({ session: s, legacy: false });
  });

  it('reads the previous release’s object body (with a revision) as that session', () => {
    const s = everyFieldDistinct();
    expect(decodeSnapshot(`41:${JSON.stringify(s)}`)).toStrictEqual({ session: s, legacy: false });
  });

  it('reads an object body without a revision (before issue 11) as legacy, no session', () => {
    const { revision: _, ...old } = everyFieldDistinct();
    expect(decodeSnapshot(`41:${JSON.stringify(old)}`)).toStrictEqual({ session: null, legacy: true });
  });

  it('reads a marker, no value and an empty value as a miss, not legacy', () => {
    for (const raw of ['5:', null, undefined, '']) {
      expect(decodeSnapshot(raw), String(raw)).toStrictEqual({ session: null, legacy: false });
    }
  });

  it('reads a body that is no session at all (null, a number, a string) as a miss, not legacy', () => {
    for (const raw of ['5:null', '5:7', '5:"x"', '5:true']) {
      expect(decodeSnapshot(raw), raw).toStrictEqual({ session: null, legacy: false });
    }
  });

  it('reads an array of another layout (a newer release’s) as a miss, not legacy', () => {
    const body = JSON.parse(encodeSnapshot(everyFieldDistinct())) as unknown[];
    expect(decodeSnapshot(`41:${JSON.stringify([3, ...body.slice(1)])}`)).toStrictEqual({ session: null, legacy: false });
    expect(decodeSnapshot(`41:${JSON.stringify([3, ...body.slice(1), 'added'])}`)).toStrictEqual({ session: null, legacy: false });
  });

  it('reads an array of this layout with a field too few or too many as a miss, not legacy', () => {
    const body = JSON.parse(encodeSnapshot(everyFieldDistinct())) as unknown[];
    expect(body[0]).toBe(SNAPSHOT_LAYOUT);
    expect(decodeSnapshot(`41:${JSON.stringify(body.slice(0, -1))}`)).toStrictEqual({ session: null, legacy: false });
    expect(decodeSnapshot(`41:${JSON.stringify([...body, 'extra'])}`)).toStrictEqual({ session: null, legacy: false });
  });

  // For the typical session below: 221 bytes against 552 (measured with this test's helper).
  it('stores the array body in fewer bytes than the object body of the same session', () => {
    for (const s of [everyFieldDistinct(), sessionSnapshot('0190f0a4-7c1e-7b6a-9d3e-2f1c4b5a6d7e', 12, { userId: 'u' })]) {
      const array = Buffer.byteLength(encodeSnapshot(s));
      const object = Buffer.byteLength(JSON.stringify(s));
      // The saving is exactly the object's `"<name>":` per field, less the array's leading `2,`.
      const names = SNAPSHOT_FIELDS.reduce((n, f) => n + f.length + 3, 0);
      expect(array).toBeLessThan(object);
      expect(object - array).toBe(names - 2);
    }
  });
});

describe('decoded snapshots (a value read again unchanged is not parsed again)', () => {
  const text = (s: Session) => `${s.version}:${encodeSnapshot(s)}`;

  it('answers the session decoded before while the key holds the same text', () => {
    const memo = new DecodedSnapshots(100_000);
    const s = everyFieldDistinct();
    const first = memo.decode('k', text(s));
    // The same text read again (a new string, as every reply is): the same decoded session.
    const again = memo.decode('k', `${text(s)}`.slice(0));
    expect(first.session).toStrictEqual(s);
    expect(again.session).toBe(first.session);
    // Another key with the same text is decoded on its own.
    expect(memo.decode('other', text(s)).session).not.toBe(first.session);
  });

  it('decodes again when the text changed, even at the same version (a session erased and created again under its id)', () => {
    const memo = new DecodedSnapshots(100_000);
    const before = sessionSnapshot('same-id', 1, { title: 'before erasure' });
    const after = sessionSnapshot('same-id', 1, { title: 'created again' });
    expect(memo.decode('k', text(before)).session?.title).toBe('before erasure');
    expect(memo.decode('k', text(after)).session?.title).toBe('created again');
    expect(memo.decode('k', text(before)).session?.title).toBe('before erasure');
  });

  it('answers what decodeSnapshot answers for every kind of value, the first time and again', () => {
    const s = everyFieldDistinct();
    const { revision: _, ...old } = s;
    const body = JSON.parse(encodeSnapshot(s)) as unknown[];
    const values = [text(s), `41:${JSON.stringify(s)}`, `41:${JSON.stringify(old)}`, '5:', null, undefined, '', '5:null', '5:7', `41:${JSON.stringify([3, ...body.slice(1)])}`];
    const memo = new DecodedSnapshots(100_000);
    for (const raw of values) {
      expect(memo.decode('k', raw), String(raw)).toStrictEqual(decodeSnapshot(raw));
      expect(memo.decode('k', raw), String(raw)).toStrictEqual(decodeSnapshot(raw));
    }
    // A marker read after a snapshot is a miss, not the snapshot decoded before it.
    memo.decode('k', text(s));
    expect(memo.decode('k', '42:')).toStrictEqual({ session: null, legacy: false });
  });

  it('keeps no more text than its bound: past it, it starts empty; a value longer than the bound is never kept', () => {
    const session = sessionSnapshot('a', 1);
    const one = text(session);
    const memo = new DecodedSnapshots(one.length * 2);
    const a = memo.decode('a', one).session;
    const b = memo.decode('b', one).session;
    expect(memo.decode('a', one).session).toBe(a);
    expect(memo.decode('b', one).session).toBe(b);
    // A third text does not fit: everything held goes, and the new one is kept.
    const c = memo.decode('c', one).session;
    expect(memo.decode('a', one).session).not.toBe(a);
    expect(memo.decode('c', one).session).toBe(c);
    const none = new DecodedSnapshots(0);
    expect(none.decode('a', one).session).not.toBe(none.decode('a', one).session);
    expect(none.decode('a', one).session).toStrictEqual(session);
  });

  it('keeps nothing for a key read as a marker or as no value, and forgets a key on request', () => {
    const memo = new DecodedSnapshots(100_000);
    const s = everyFieldDistinct();
    const first = memo.decode('k', text(s)).session;
    expect(memo.decode('k', '42:').session).toBeNull();
    // The snapshot's text again: decoded anew, nothing was kept across the marker.
    const again = memo.decode('k', text(s)).session;
    expect(again).toStrictEqual(s);
    expect(again).not.toBe(first);
    expect(memo.decode('k', null).session).toBeNull();
    expect(memo.decode('k', text(s)).session).not.toBe(again);
    const kept = memo.decode('k', text(s)).session;
    memo.forget('k');
    expect(memo.decode('k', text(s)).session).not.toBe(kept);
  });

  it('stays within its bound when a key’s text is replaced by a longer one', () => {
    const short = text(sessionSnapshot('a', 1, { title: 'short' }));
    const long = text(sessionSnapshot('a', 2, { title: 'a much longer title than before, '.repeat(4) }));
    const memo = new DecodedSnapshots(short.length + long.length - 1);
    const b = memo.decode('b', short).session;
    memo.decode('a', short);
    // Replacing a's text would pass the bound with b's: everything held goes, a's new text stays.
    const a = memo.decode('a', long).session;
    expect(memo.decode('b', short).session).not.toBe(b);
    expect(memo.decode('a', long).session).not.toBe(a);
  });
});
