/**
 * The workers' pure rules (src/core/run-rules.ts, issue 12): a worker's claim (planClaim), the
 * owner-lost hand-back (planOwnerLost), a finalization that leaves an agent run at the head of
 * the queue to the workers, and an agent run admitted unowned. With fast-check, over every
 * session status, liveness, running run (closure or agent, each policy and attempt count) and
 * queue (pinned and unowned agent runs); then random histories applied to a model of the rows
 * (what sql/run-apply.sql does), with the invariants checked after every step.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  admit,
  handsBack,
  isClaimable,
  planClaim,
  planFinalization,
  planOwnerLost,
  type ActiveRun,
  type FinalizationRequest,
  type RunLockState,
  type SessionRunState,
  type WritePlan,
} from '../../src/core/run-rules.js';
import type { OnOwnerLost } from '../../src/core/runs.js';
import { canTransition, ENDED_STATUSES, SESSION_STATUSES, type SessionStatus } from '../../src/core/types.js';

const LEASE_MS = 1_000;
const AGENTS = ['alpha', 'beta'] as const;

const arbStatus = fc.constantFrom(...SESSION_STATUSES);
const arbPolicy = fc.constantFrom<OnOwnerLost>('fail', 'retry');

/** A run as the lock reads it: a closure run (pinned, agent null) or an agent run. */
function arbRun(id: string, status: 'running' | 'queued'): fc.Arbitrary<ActiveRun> {
  return fc
    .record({
      agent: fc.option(fc.constantFrom(...AGENTS), { nil: null }),
      owned: fc.boolean(),
      leaseLapsed: fc.boolean(),
      onOwnerLost: arbPolicy,
      maxRetries: fc.integer({ min: 0, max: 3 }),
      attempts: fc.integer({ min: 0, max: 4 }),
      interruptRequested: fc.boolean(),
    })
    .map((r) => {
      // A closure run always has its owner; a queued agent run may wait unowned; a running run is owned.
      const owner = r.agent === null || status === 'running' || r.owned ? 'w1' : null;
      return {
        id,
        status,
        owner,
        leaseLapsed: owner === null ? false : r.leaseLapsed,
        input: { id },
        agent: r.agent,
        onOwnerLost: r.agent === null ? 'fail' : r.onOwnerLost,
        maxRetries: r.maxRetries,
        attempts: Math.min(r.attempts, r.maxRetries + 1),
        interruptRequested: status === 'running' && r.interruptRequested,
      } satisfies ActiveRun;
    });
}

const arbState: fc.Arbitrary<RunLockState> = fc
  .record({
    status: arbStatus,
    live: fc.boolean(),
    outputSeq: fc.integer({ min: 0, max: 50 }),
    version: fc.integer({ min: 1, max: 50 }),
    running: fc.option(arbRun('r0', 'running'), { nil: null }),
    queued: fc.array(fc.nat(), { maxLength: 4 }).chain((xs) => fc.tuple(...xs.map((_, i) => arbRun(`q${i + 1}`, 'queued')))),
  })
  .map((x) => {
    const session: SessionRunState = {
      id: 's',
      status: x.status,
      effectiveStatus: x.status,
      live: x.live && !ENDED_STATUSES.includes(x.status),
      version: x.version,
      outputSeq: x.outputSeq,
      runningRunId: x.running?.id ?? null,
      queuedRuns: x.queued.length,
    };
    return { session, running: x.running, queued: x.queued };
  });

function ended(s: SessionRunState): boolean {
  return !s.live || ENDED_STATUSES.includes(s.effectiveStatus);
}

const lost = (runId: string, owner: string | null): FinalizationRequest => ({
  runId,
  owner,
  status: 'failed',
  reason: owner === null ? 'owner_lost' : 'owner_shutdown',
  error: 'lost',
  sessionStatus: 'idle',
  leaseMs: LEASE_MS,
  ownerLost: true,
});

describe('claim', () => {
  it('claims exactly the unowned agent run at the head of the queue of a live session where nothing runs', () => {
    fc.assert(
      fc.property(arbState, fc.constantFrom('q1', 'q2', 'q3', 'r0', 'nope'), (state, runId) => {
        const decided = planClaim(state, { runId, owner: 'w2', leaseMs: LEASE_MS });
        const s = state.session;
        const head = state.queued[0];
        const startable = head !== undefined && head.id === runId && isClaimable(head) && state.running === null;
        if (!startable) {
          expect(decided.decision).toBe('skip');
          return;
        }
        if (ended(s)) {
          expect(decided.decision).toBe('end');
          if (decided.decision !== 'end') return;
          // Everything queued ends: nothing of an ended session is ever claimed again.
          expect(decided.cancelled).toEqual(state.queued.map((r) => r.id));
          expect(decided.plan.runs.every((w) => w.kind === 'end' && w.reason === 'session_ended')).toBe(true);
          expect(decided.plan.session).toMatchObject({ queuedRuns: 0, runningRunId: null, status: null });
          expect(decided.plan.output).toEqual([]);
          return;
        }
        if (!canTransition(s.status, 'active')) {
          expect(decided.decision).toBe('skip');
          return;
        }
        expect(decided.decision).toBe('claim');
        if (decided.decision !== 'claim') return;
        const plan = decided.plan;
        expect(plan.runs).toEqual([{ kind: 'promote', id: runId, startSeq: s.outputSeq + 1, leaseMs: LEASE_MS, owner: 'w2', takesInput: false }]);
        expect(plan.session).toEqual({ outputSeq: s.outputSeq + 1, runningRunId: runId, queuedRuns: s.queuedRuns - 1, status: 'active' });
        expect(plan.output).toEqual([{ seq: s.outputSeq + 1, runId, type: 'status', data: { state: 'running', run_id: runId } }]);
        expect(plan.outbox.at(-1)).toEqual({ type: 'run.started', payload: { run_id: runId, input: head.input, owner: 'w2' } });
        expect(plan.outbox.some((e) => e.type === 'session.status_changed')).toBe(s.status !== 'active');
      }),
      { numRuns: 3_000 },
    );
  });
});

describe('owner lost', () => {
  it('hands back exactly a running agent run with policy retry and restarts left, not asked to stop, on a live session; else finalizes', () => {
    fc.assert(
      fc.property(arbState, fc.constantFrom<string | null>(null, 'w1', 'w2'), (state, owner) => {
        const running = state.running;
        fc.pre(running !== null);
        const req = lost(running.id, owner);
        const decided = planOwnerLost(state, req);
        const back =
          running.agent !== null &&
          running.onOwnerLost === 'retry' &&
          running.interruptRequested !== true &&
          (running.attempts ?? 0) < (running.maxRetries ?? 0) &&
          !ended(state.session);
        expect(handsBack(running, state.session)).toBe(back);
        if (!back) {
          expect(decided).toEqual(planFinalization(state, req));
          return;
        }
        const mayAct = owner === null ? running.leaseLapsed : running.owner === owner;
        if (!mayAct) {
          expect(decided).toBeNull();
          return;
        }
        expect(decided).not.toBeNull();
        if (!decided) return;
        const s = state.session;
        const attempt = (running.attempts ?? 0) + 1;
        const data = { run_id: running.id, attempt, reason: req.reason };
        expect(decided.plan.runs).toEqual([{ kind: 'handback', id: running.id }]);
        expect(decided.plan.output).toEqual([{ seq: s.outputSeq + 1, runId: running.id, type: 'restarted', data }]);
        expect(decided.plan.session).toMatchObject({ outputSeq: s.outputSeq + 1, runningRunId: null, queuedRuns: s.queuedRuns + 1 });
        // The session leaves `active` (nothing runs now); a status it had otherwise stays.
        expect(decided.plan.session?.status).toBe(s.status === 'active' ? 'idle' : null);
        expect(decided.plan.outbox.at(-1)).toEqual({ type: 'run.restarted', payload: data });
        expect(decided.claimable).toEqual([running.agent]);
        expect(decided.promoted).toBeNull();
      }),
      { numRuns: 3_000 },
    );
  });

  it('never hands back a closure run, nor one whose restarts are used up', () => {
    fc.assert(
      fc.property(arbState, (state) => {
        const r = state.running;
        fc.pre(r !== null && (r.agent === null || (r.attempts ?? 0) >= (r.maxRetries ?? 0) || r.onOwnerLost === 'fail'));
        const decided = planOwnerLost(state, lost(r.id, null));
        expect(decided?.plan.runs.some((w) => w.kind === 'handback') ?? false).toBe(false);
      }),
    );
  });
});

describe('finalization and admission of agent runs', () => {
  it('never promotes an unowned agent run: it is left to the workers, who are woken', () => {
    fc.assert(
      fc.property(arbState, fc.constantFrom<'completed' | 'failed' | 'interrupted'>('completed', 'failed', 'interrupted'), (state, status) => {
        const running = state.running;
        fc.pre(running !== null && running.owner !== null);
        const decided = planFinalization(state, {
          runId: running.id,
          owner: running.owner,
          status,
          reason: status,
          error: null,
          sessionStatus: 'idle',
          leaseMs: LEASE_MS,
        });
        expect(decided).not.toBeNull();
        if (!decided) return;
        const head = state.queued[0];
        const leftToWorkers = head !== undefined && isClaimable(head) && !ended(state.session);
        expect(decided.promoted).toBe(leftToWorkers || !head || ended(state.session) ? null : head.id);
        expect(decided.claimable).toEqual(leftToWorkers ? [head.agent] : []);
        if (leftToWorkers) {
          expect(decided.plan.session?.runningRunId).toBeNull();
          expect(decided.plan.session?.queuedRuns).toBe(state.queued.length);
        }
      }),
      { numRuns: 2_000 },
    );
  });

  it('queues an agent run unowned and unleased when it is not started here or waits behind another', () => {
    fc.assert(
      fc.property(
        arbState,
        fc.boolean(),
        fc.option(fc.constantFrom(...AGENTS), { nil: null }),
        fc.constantFrom('reject' as const, 'enqueue' as const, 'interrupt' as const),
        (state, startHere, agent, ifBusy) => {
          const decided = admit(state, {
            runId: 'new',
            owner: 'w1',
            input: 'x',
            ifBusy,
            maxQueued: 10,
            leaseMs: LEASE_MS,
            agent,
            onOwnerLost: 'retry',
            maxRetries: 2,
            startHere,
          });
          if (decided.decision === 'refuse') return;
          const insert = decided.plan.runs.find((w) => w.kind === 'insert');
          expect(insert).toBeDefined();
          if (insert?.kind !== 'insert') return;
          expect(insert.agent).toBe(agent);
          // A closure run is pinned whatever it asked for; its policy is `fail`.
          expect(insert.onOwnerLost).toBe(agent === null ? 'fail' : 'retry');
          if (insert.status === 'queued' && agent !== null) {
            expect(insert.owner).toBeNull();
            expect(insert.leaseMs).toBeNull();
          } else {
            expect(insert.owner).toBe('w1');
          }
          const busy = state.session.runningRunId !== null || state.session.queuedRuns > 0;
          if (!busy && agent !== null && !startHere) expect(decided.decision).toBe('queued');
          if (insert.status === 'running') expect(agent === null || startHere).toBe(true);
        },
      ),
      { numRuns: 3_000 },
    );
  });
});

// ---------------------------------------------------------------------------------------
// Histories

interface ModelRun {
  id: string;
  status: string;
  owner: string | null;
  leaseLapsed: boolean;
  agent: string | null;
  onOwnerLost: OnOwnerLost;
  maxRetries: number;
  attempts: number;
  seqs: { type: string; seq: number }[];
}

interface Model {
  session: SessionRunState;
  runs: ModelRun[];
  nextId: number;
}

function lockState(m: Model): RunLockState {
  const active = (r: ModelRun): ActiveRun => ({
    id: r.id,
    status: r.status as ActiveRun['status'],
    owner: r.owner,
    leaseLapsed: r.leaseLapsed,
    input: null,
    agent: r.agent,
    onOwnerLost: r.onOwnerLost,
    maxRetries: r.maxRetries,
    attempts: r.attempts,
  });
  const running = m.runs.find((r) => r.status === 'running');
  return { session: { ...m.session }, running: running ? active(running) : null, queued: m.runs.filter((r) => r.status === 'queued').map(active) };
}

/** What sql/run-apply.sql does with a plan (the run rows are kept in queue order: a handed-back run is the oldest). */
function apply(m: Model, plan: WritePlan): Model {
  const runs = m.runs.map((r) => ({ ...r, seqs: [...r.seqs] }));
  const byId = (id: string) => {
    const r = runs.find((x) => x.id === id);
    if (!r) throw new Error(`plan names unknown run ${id}`);
    return r;
  };
  for (const w of plan.runs) {
    switch (w.kind) {
      case 'end':
        Object.assign(byId(w.id), { status: w.status, leaseLapsed: false });
        break;
      case 'flag':
        break;
      case 'handback':
        Object.assign(byId(w.id), { status: 'queued', owner: null, leaseLapsed: false, attempts: byId(w.id).attempts + 1 });
        break;
      case 'promote':
        Object.assign(byId(w.id), { status: 'running', leaseLapsed: false, owner: w.owner ?? byId(w.id).owner });
        break;
      case 'insert':
        runs.push({
          id: w.id,
          status: w.status,
          owner: w.owner,
          leaseLapsed: false,
          agent: w.agent ?? null,
          onOwnerLost: w.onOwnerLost ?? 'fail',
          maxRetries: w.maxRetries ?? 0,
          attempts: 0,
          seqs: [],
        });
        break;
    }
  }
  for (const o of plan.output) byId(o.runId).seqs.push({ type: o.type, seq: o.seq });
  const session = { ...m.session };
  if (plan.session) {
    for (const o of plan.output) if (o.seq <= m.session.outputSeq) throw new Error('output seq reused');
    Object.assign(session, {
      outputSeq: plan.session.outputSeq,
      runningRunId: plan.session.runningRunId,
      queuedRuns: plan.session.queuedRuns,
      status: plan.session.status ?? session.status,
      effectiveStatus: plan.session.status ?? session.effectiveStatus,
    });
  }
  // Queue order is created_at: a handed-back run (the oldest there) goes first.
  const queued = runs.filter((r) => r.status === 'queued');
  const order = (r: ModelRun) => Number(r.id.slice(1));
  queued.sort((a, b) => order(a) - order(b));
  return { session, runs: [...runs.filter((r) => r.status !== 'queued'), ...queued], nextId: m.nextId };
}

function checkInvariants(m: Model): void {
  const running = m.runs.filter((r) => r.status === 'running');
  expect(running.length).toBeLessThanOrEqual(1);
  expect(m.session.runningRunId).toBe(running[0]?.id ?? null);
  expect(m.session.queuedRuns).toBe(m.runs.filter((r) => r.status === 'queued').length);
  for (const r of m.runs) {
    // Only an agent run ever waits unowned; it never runs unowned.
    if (r.owner === null) expect(r.agent).not.toBeNull();
    if (r.status === 'running') expect(r.owner).not.toBeNull();
    expect(r.attempts).toBeLessThanOrEqual(r.maxRetries);
    // Every start of a run writes its `status` event; a restart is marked before the next start.
    const types = r.seqs.map((s) => s.type);
    expect(types.filter((t) => t === 'restarted')).toHaveLength(r.attempts);
  }
  if (m.session.status === 'active' && m.session.live) expect(running.length).toBe(1);
}

type Step =
  | { kind: 'start'; agent: string | null; startHere: boolean; ifBusy: 'reject' | 'enqueue' | 'interrupt'; policy: OnOwnerLost; retries: number }
  | { kind: 'claim'; worker: string; pick: number }
  | { kind: 'end'; status: 'completed' | 'failed' | 'interrupted' }
  | { kind: 'lapse' }
  | { kind: 'sweep' }
  | { kind: 'drain' }
  | { kind: 'kill' };

const arbStep: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('start' as const),
      agent: fc.option(fc.constantFrom(...AGENTS), { nil: null, freq: 4 }),
      startHere: fc.boolean(),
      ifBusy: fc.constantFrom('reject' as const, 'enqueue' as const, 'interrupt' as const),
      policy: arbPolicy,
      retries: fc.integer({ min: 0, max: 2 }),
    }),
  },
  // Mostly the head of the queue (a claim of another run is skipped).
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('claim' as const), worker: fc.constantFrom('w1', 'w2'), pick: fc.oneof(fc.constant(0), fc.nat(3)) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('end' as const), status: fc.constantFrom('completed' as const, 'failed' as const, 'interrupted' as const) }) },
  { weight: 2, arbitrary: fc.constant({ kind: 'lapse' as const }) },
  { weight: 2, arbitrary: fc.constant({ kind: 'sweep' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'drain' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'kill' as const }) },
);

function step(m: Model, s: Step): Model {
  const state = lockState(m);
  switch (s.kind) {
    case 'start': {
      const id = `n${m.nextId}`;
      const next = { ...m, nextId: m.nextId + 1 };
      const decided = admit(state, {
        runId: id,
        owner: 'w1',
        input: null,
        ifBusy: s.ifBusy,
        maxQueued: 3,
        leaseMs: LEASE_MS,
        agent: s.agent,
        onOwnerLost: s.policy,
        maxRetries: s.retries,
        startHere: s.startHere,
      });
      return decided.decision === 'refuse' ? next : apply(next, decided.plan);
    }
    case 'claim': {
      const target = state.queued[s.pick]?.id ?? 'none';
      const decided = planClaim(state, { runId: target, owner: s.worker, leaseMs: LEASE_MS });
      return decided.decision === 'skip' ? m : apply(m, decided.plan);
    }
    case 'end': {
      const r = state.running;
      if (!r || r.owner === null) return m;
      const decided = planFinalization(state, { runId: r.id, owner: r.owner, status: s.status, reason: s.status, error: null, sessionStatus: 'idle', leaseMs: LEASE_MS });
      return decided ? apply(m, decided.plan) : m;
    }
    case 'lapse':
      return { ...m, runs: m.runs.map((r) => (r.owner !== null && (r.status === 'running' || r.status === 'queued') ? { ...r, leaseLapsed: true } : r)) };
    case 'sweep': {
      let cur = m;
      for (const r of lockState(m).queued.concat(lockState(m).running ?? [])) {
        const decided = planOwnerLost(lockState(cur), lost(r.id, null));
        if (decided) cur = apply(cur, decided.plan);
      }
      return cur;
    }
    case 'drain': {
      const r = state.running;
      if (!r || r.owner === null) return m;
      const decided = planOwnerLost(state, lost(r.id, r.owner));
      return decided ? apply(m, decided.plan) : m;
    }
    case 'kill':
      return { ...m, session: { ...m.session, live: false } };
  }
}

describe('histories', () => {
  it('keep every invariant over random starts, claims, ends, lapses, sweeps, drains and session ends', () => {
    const seen = { claims: 0, handBacks: 0, restartsClaimed: 0 };
    fc.assert(
      fc.property(fc.array(arbStep, { maxLength: 40 }), (steps) => {
        let m: Model = {
          session: { id: 's', status: 'idle', effectiveStatus: 'idle', live: true, version: 1, outputSeq: 0, runningRunId: null, queuedRuns: 0 },
          runs: [],
          nextId: 1,
        };
        for (const s of steps) {
          const before = m;
          m = step(m, s);
          checkInvariants(m);
          for (const r of m.runs) {
            const was = before.runs.find((x) => x.id === r.id);
            if (was?.status === 'queued' && r.status === 'running' && r.agent !== null) {
              seen.claims++;
              if (r.attempts > 0) seen.restartsClaimed++;
            }
            if (was && r.attempts > was.attempts) seen.handBacks++;
          }
        }
      }),
      { numRuns: 1_500 },
    );
    // The histories reach what they are about: claims, hand-backs, and restarted runs claimed again.
    expect(seen.claims).toBeGreaterThan(30);
    expect(seen.handBacks).toBeGreaterThan(5);
    expect(seen.restartsClaimed).toBeGreaterThan(0);
  });
});

// Keeps the list of statuses honest: a claim needs a status that may become active.
it('names the statuses from which a claim may start a run', () => {
  const claimable = SESSION_STATUSES.filter((st: SessionStatus) => canTransition(st, 'active'));
  expect(claimable).toContain('idle');
});
