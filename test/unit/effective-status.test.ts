/**
 * `effectiveStatus` (src/core/types.ts) compares canonical timestamps ("YYYY-MM-DDTHH:mm:ss.sssZ")
 * as text against the instant written the same way (a two-slot cache of formatted instants),
 * and parses any other text. What this pins: its answer is exactly that of the `Date.parse`
 * rule it replaced, at every millisecond around both deadlines, for every status, for whole,
 * zero, fractional and no idle timeouts, for other texts `Date.parse` reads, and whatever
 * order of instants the cache is asked in.
 */
import { describe, expect, it } from 'vitest';
import { effectiveStatus, ENDED_STATUSES, SESSION_STATUSES, type Session, type SessionStatus } from '../../src/core/types.js';
import { sessionSnapshot } from '../setup/sessions.js';

/** The rule as it was: both deadlines parsed with `Date.parse`. */
function reference(s: Session, now: number): SessionStatus {
  if (ENDED_STATUSES.includes(s.status)) return s.status;
  if (s.expiresAt !== null && Date.parse(s.expiresAt) <= now) return 'expired';
  if (s.status !== 'active' && s.idleTimeoutSeconds !== null && Date.parse(s.lastActiveAt) + s.idleTimeoutSeconds * 1000 <= now) {
    return 'expired';
  }
  return s.status;
}

const iso = (ms: number) => new Date(ms).toISOString();

/**
 * Texts other than the canonical one that `Date.parse` reads as the instant `ms`: those that
 * cannot carry it (no milliseconds, a date only, …) are left out.
 */
function otherForms(ms: number): string[] {
  const canonical = iso(ms);
  const shifted = (minutes: number, sign: string) => `${iso(ms + minutes * 60_000).slice(0, 23)}${sign}`;
  const forms = [
    `${canonical.slice(0, 19)}Z`,
    `${canonical.slice(0, 21)}Z`,
    `${canonical.slice(0, 16)}Z`,
    `${canonical.slice(0, 23)}+00:00`,
    shifted(60, '+01:00'),
    shifted(-330, '-05:30'),
    `${canonical.slice(0, 23)}z`,
    `${canonical.slice(0, 23)}000Z`,
    `+00${canonical}`,
    canonical.slice(0, 10),
    new Date(ms).toUTCString(),
  ];
  return forms.filter((f) => f !== canonical && Date.parse(f) === ms);
}

/** A small LCG: a fixed, reproducible order. */
function lcg(seed: number): () => number {
  let x = seed >>> 0;
  return () => {
    x = (Math.imul(x, 1_664_525) + 1_013_904_223) >>> 0;
    return x / 2 ** 32;
  };
}

const BASE = Date.parse('2026-12-01T10:00:00.000Z');
/** Consecutive milliseconds, a second and a year boundary, a fraction, the epoch, year 0. */
const NOWS = [
  BASE,
  BASE + 1,
  BASE + 2,
  BASE - 1,
  BASE + 0.25,
  Date.parse('2026-12-31T23:59:59.999Z'),
  Date.parse('2027-01-01T00:00:00.000Z'),
  0,
  Date.parse('0000-01-01T00:00:01.000Z'),
];
const IDLE_TIMEOUTS = [null, 0, 1, 1800, 0.5];
const OFFSETS = [-1000, -2, -1, 0, 1, 2, 1000];

/** The texts of the instants around `anchor`: each canonical, and each in one other form (in turn). */
function textsAround(anchor: number, turn: { n: number }): string[] {
  const texts: string[] = [];
  for (const offset of OFFSETS) {
    const ms = Math.floor(anchor) + offset;
    texts.push(iso(ms));
    const forms = otherForms(ms);
    if (forms.length > 0) texts.push(forms[turn.n++ % forms.length] as string);
  }
  return texts;
}

/** Sessions whose deadlines fall around `now`: expiry around now, last activity around now and now less each idle timeout. */
function sessionsAround(now: number): Session[] {
  const turn = { n: 0 };
  const sessions: Session[] = [];
  for (const idleTimeoutSeconds of IDLE_TIMEOUTS) {
    const expiries = [null, ...textsAround(now, turn), 'not a time'];
    const lastActive = [...textsAround(now, turn), 'not a time'];
    if (idleTimeoutSeconds !== null) lastActive.push(...textsAround(now - idleTimeoutSeconds * 1000, turn));
    for (const status of SESSION_STATUSES) {
      for (const expiresAt of expiries) {
        for (const lastActiveAt of lastActive) {
          sessions.push(sessionSnapshot('s', 1, { status, idleTimeoutSeconds, expiresAt, lastActiveAt }));
        }
      }
    }
  }
  return sessions;
}

const describeCase = (s: Session, now: number) =>
  `now ${iso(Math.floor(now))}${Number.isInteger(now) ? '' : ` + ${now % 1}`}, ${s.status}, idle ${s.idleTimeoutSeconds}, expires ${s.expiresAt}, last active ${s.lastActiveAt}`;

describe('effectiveStatus', () => {
  it('answers as Date.parse did, at every millisecond around both deadlines, for every status and idle timeout', () => {
    const outcomes = new Map<string, number>();
    let checked = 0;
    for (const now of NOWS) {
      for (const s of sessionsAround(now)) {
        const want = reference(s, now);
        const got = effectiveStatus(s, now);
        if (got !== want) expect(got, describeCase(s, now)).toBe(want);
        outcomes.set(`${s.status}→${got}`, (outcomes.get(`${s.status}→${got}`) ?? 0) + 1);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(100_000);
    // Both answers occur for every live status (the cases do straddle the deadlines).
    for (const status of SESSION_STATUSES) {
      if (ENDED_STATUSES.includes(status)) continue;
      expect(outcomes.get(`${status}→${status}`), status).toBeGreaterThan(0);
      expect(outcomes.get(`${status}→expired`), status).toBeGreaterThan(0);
    }
  });

  it('answers as Date.parse did whatever order the instants come in (the two-slot cache of formatted instants)', () => {
    // Each session asked at a run of instants that revisits, alternates and evicts: n1, n2, n1, n3, …
    const at = (n: number) => [n, n - 1, n, n + 1, n - 1, n, n + 2, n + 1, n - 1, n - 2, n];
    let checked = 0;
    for (const now of [BASE, BASE + 1, Date.parse('2027-01-01T00:00:00.000Z')]) {
      for (const s of sessionsAround(now)) {
        for (const t of at(now)) {
          const want = reference(s, t);
          const got = effectiveStatus(s, t);
          if (got !== want) expect(got, describeCase(s, t)).toBe(want);
          checked++;
        }
      }
    }
    // And all of them in a scrambled order, instants from the whole list.
    const random = lcg(20_261_201);
    const all = NOWS.flatMap((now) => sessionsAround(now));
    for (let i = 0; i < 200_000; i++) {
      const s = all[Math.floor(random() * all.length)] as Session;
      const t = (NOWS[Math.floor(random() * NOWS.length)] as number) + Math.floor(random() * 5) - 2;
      const want = reference(s, t);
      const got = effectiveStatus(s, t);
      if (got !== want) expect(got, describeCase(s, t)).toBe(want);
      checked++;
    }
    expect(checked).toBeGreaterThan(500_000);
  });

  it('alternating between two instants a millisecond apart answers for the instant asked, not the one remembered', () => {
    const t = BASE;
    const expiring = sessionSnapshot('s', 1, { status: 'idle', expiresAt: iso(t) });
    const idling = sessionSnapshot('s', 1, { status: 'idle', idleTimeoutSeconds: 1, lastActiveAt: iso(t - 1000) });
    for (const [now, want] of [
      [t, 'expired'],
      [t - 1, 'idle'],
      [t, 'expired'],
      [t + 1, 'expired'],
      [t - 1, 'idle'],
      [t - 2, 'idle'],
      [t, 'expired'],
      [t - 1, 'idle'],
    ] as const) {
      expect(effectiveStatus(expiring, now), `expiry at ${now - t} ms`).toBe(want);
      expect(effectiveStatus(idling, now), `idle deadline at ${now - t} ms`).toBe(want);
    }
  });

  it('reads other texts of an instant as that instant (no milliseconds, an offset, another zone)', () => {
    const deadline = Date.parse('2026-12-01T10:00:00.000Z');
    for (const text of ['2026-12-01T10:00:00.000Z', '2026-12-01T10:00:00Z', '2026-12-01T10:00:00.000+00:00', '2026-12-01T11:00:00.000+01:00']) {
      for (const now of [deadline - 1000, deadline - 1, deadline, deadline + 1, deadline + 1000]) {
        const expiring = sessionSnapshot('s', 1, { status: 'idle', expiresAt: text });
        const idling = sessionSnapshot('s', 1, { status: 'waiting_input', idleTimeoutSeconds: 1800, lastActiveAt: text });
        const active = sessionSnapshot('s', 1, { status: 'active', idleTimeoutSeconds: 1800, lastActiveAt: text });
        expect(effectiveStatus(expiring, now), `${text} at ${now - deadline}`).toBe(reference(expiring, now));
        expect(effectiveStatus(expiring, now), `${text} at ${now - deadline}`).toBe(now >= deadline ? 'expired' : 'idle');
        const idleNow = now + 1_800_000;
        expect(effectiveStatus(idling, idleNow), `${text} idle at ${now - deadline}`).toBe(reference(idling, idleNow));
        expect(effectiveStatus(idling, idleNow), `${text} idle at ${now - deadline}`).toBe(now >= deadline ? 'expired' : 'waiting_input');
        // A running agent is never idle, only expired by its expiry.
        expect(effectiveStatus(active, idleNow)).toBe('active');
      }
    }
  });

  it('answers as Date.parse did at an instant that is not a finite number', () => {
    const at = iso(BASE);
    for (const now of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
      for (const text of [at, `${at.slice(0, 19)}Z`]) {
        for (const s of [
          sessionSnapshot('s', 1, { status: 'idle', expiresAt: text }),
          sessionSnapshot('s', 1, { status: 'idle', idleTimeoutSeconds: 1800, lastActiveAt: text }),
        ]) {
          expect(effectiveStatus(s, now), `${text} at ${now}`).toBe(reference(s, now));
        }
      }
    }
  });

  it('answers as Date.parse did at instants outside four-digit years, before 1970, and past the range of dates', () => {
    const last = Date.parse('9999-12-31T23:59:59.999Z');
    const texts = [iso(last), iso(last - 1), iso(BASE), iso(0)];
    const nows = [last, last + 1, last + 86_400_000, -0.5, -1, -86_400_000, 0];
    const idles = [null, 1800, 1e13];
    for (const now of nows) {
      for (const text of texts) {
        for (const idleTimeoutSeconds of idles) {
          for (const s of [
            sessionSnapshot('s', 1, { status: 'idle', idleTimeoutSeconds, expiresAt: text }),
            sessionSnapshot('s', 1, { status: 'idle', idleTimeoutSeconds, lastActiveAt: text }),
          ]) {
            expect(effectiveStatus(s, now), describeCase(s, now)).toBe(reference(s, now));
          }
        }
      }
    }
  });

  it('returns an ended status as it is, past both deadlines', () => {
    for (const status of ENDED_STATUSES) {
      const s = sessionSnapshot('s', 1, { status, idleTimeoutSeconds: 1, expiresAt: iso(BASE - 10_000), lastActiveAt: iso(BASE - 10_000) });
      expect(effectiveStatus(s, BASE)).toBe(status);
    }
  });
});
