/**
 * The run lifecycle's pure rules (src/core/run-rules.ts), exhaustively with fast-check: every
 * ifBusy policy against every session, run and queue state, single decisions and long random
 * histories applied to a model of the rows (what sql/run-apply.sql does), with the invariants
 * checked after every step.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  admit,
  admissionNeedsRuns,
  planDuePromotion,
  planFinalization,
  planInterrupt,
  type ActiveRun,
  type PlannedEvent,
  type PlannedOutput,
  type RunLockState,
  type SessionRunState,
  type WritePlan,
} from '../../src/core/run-rules.js';
import { IF_BUSY, type EndedRunStatus, type IfBusy, type RunStatus } from '../../src/core/runs.js';
import { ENDED_STATUSES, SESSION_STATUSES, type SessionStatus } from '../../src/core/types.js';

const OWNERS = ['a', 'b', 'c'] as const;
const MAX_QUEUED = 4;
const LEASE_MS = 1_000;

interface ModelRun {
  id: string;
  status: RunStatus;
  owner: string | null;
  input: unknown;
  /** Every input it starts with, in admission order. */
  inputs: unknown[];
  /** Input handed to it while it ran (steer). */
  steered: unknown[];
  takesInput: boolean;
  /** ms until its not_before; 0: it may start. */
  startsInMs: number;
  leaseLapsed: boolean;
  interruptRequested: boolean;
  startSeq: number | null;
  endSeq: number | null;
  endReason: string | null;
}

/** The rows of one session as the database holds them: what the rules read and run-apply writes. */
interface Model {
  session: SessionRunState;
  runs: ModelRun[];
  output: PlannedOutput[];
  outbox: PlannedEvent[];
  nextId: number;
}

function lockState(m: Model): RunLockState {
  const queued = m.runs.filter((r) => r.status === 'queued');
  const active = (r: ModelRun, i: number): ActiveRun => ({
    id: r.id,
    status: r.status as ActiveRun['status'],
    owner: r.owner,
    leaseLapsed: r.leaseLapsed,
    input: r.status === 'queued' && i <= 1 ? r.inputs[0] : null,
    takesInput: r.takesInput,
    interruptRequested: r.interruptRequested,
    startsInMs: r.startsInMs,
  });
  const running = m.runs.find((r) => r.status === 'running');
  return { session: { ...m.session }, running: running ? active(running, 0) : null, queued: queued.map(active) };
}

/** What sql/run-apply.sql does with a plan. */
function apply(m: Model, plan: WritePlan): Model {
  const runs = m.runs.map((r) => ({ ...r }));
  const byId = (id: string) => {
    const r = runs.find((x) => x.id === id);
    if (!r) throw new Error(`plan names unknown run ${id}`);
    return r;
  };
  for (const w of plan.runs) {
    switch (w.kind) {
      case 'end': {
        const r = byId(w.id);
        Object.assign(r, { status: w.status, endReason: w.reason, endSeq: w.endSeq, leaseLapsed: false });
        if (w.markInterrupted) r.interruptRequested = true;
        break;
      }
      case 'flag':
        byId(w.id).interruptRequested = true;
        break;
      case 'promote':
        Object.assign(byId(w.id), { status: 'running', startSeq: w.startSeq, leaseLapsed: false });
        break;
      case 'insert':
        if (runs.some((r) => r.id === w.id)) throw new Error(`plan inserts ${w.id} twice`);
        runs.push(
          modelRun(w.id, w.status, w.owner, {
            input: w.input,
            inputs: [w.input],
            startSeq: w.startSeq,
            takesInput: w.takesInput,
            startsInMs: w.deferMs ?? 0,
          }),
        );
        break;
      case 'append': {
        const r = byId(w.id);
        if (r.status !== 'queued') throw new Error(`plan appends to ${r.status} run ${w.id}`);
        r.inputs = [...r.inputs, w.input];
        if (w.deferMs !== null) r.startsInMs = w.deferMs;
        break;
      }
      case 'steer': {
        const r = byId(w.id);
        if (r.status !== 'running') throw new Error(`plan steers into ${r.status} run ${w.id}`);
        r.steered = [...r.steered, w.input];
        break;
      }
    }
  }
  if (runs.filter((r) => r.status === 'running').length > 1) throw new Error('runs_one_running violated');
  let session = m.session;
  if (plan.session) {
    const s = plan.session;
    session = { ...session, outputSeq: s.outputSeq, runningRunId: s.runningRunId, queuedRuns: s.queuedRuns };
    if (s.status !== null) session = { ...session, status: s.status, effectiveStatus: s.status, version: session.version + 1 };
  }
  const seen = new Set(m.output.map((e) => e.seq));
  for (const e of plan.output) {
    if (seen.has(e.seq)) throw new Error(`seq ${e.seq} written twice`);
    seen.add(e.seq);
  }
  return { ...m, session, runs, output: [...m.output, ...plan.output], outbox: [...m.outbox, ...plan.outbox] };
}

function checkInvariants(m: Model): void {
  const running = m.runs.filter((r) => r.status === 'running');
  const queued = m.runs.filter((r) => r.status === 'queued');
  expect(running.length).toBeLessThanOrEqual(1);
  expect(m.session.runningRunId).toBe(running[0]?.id ?? null);
  expect(m.session.queuedRuns).toBe(queued.length);
  // Seqs are contiguous and increasing from the first.
  expect(m.output.map((e) => e.seq)).toEqual(m.output.map((_, i) => i + 1));
  expect(m.session.outputSeq).toBe(m.output.length);
  for (const r of m.runs) {
    const own = m.output.filter((e) => e.runId === r.id);
    const starts = own.filter((e) => e.type === 'status');
    const terminals = own.filter((e) => e.type === 'done' || e.type === 'error');
    // A run that started has one start event; a terminal event exactly when a running run ended.
    expect(starts.length).toBe(r.startSeq === null ? 0 : 1);
    expect(terminals.length).toBe(r.startSeq !== null && r.status !== 'running' ? 1 : 0);
    if (r.startSeq !== null) expect(starts[0]?.seq).toBe(r.startSeq);
    if (terminals[0]) {
      expect(terminals[0].seq).toBe(r.endSeq);
      expect(terminals[0].type).toBe(r.status === 'failed' ? 'error' : 'done');
      // Nothing of the run comes after its terminal event.
      expect(Math.max(...own.map((e) => e.seq))).toBe(r.endSeq);
    }
  }
}

function emptyModel(session: Partial<SessionRunState> = {}): Model {
  return {
    session: {
      id: 'session',
      status: 'idle',
      effectiveStatus: 'idle',
      live: true,
      version: 1,
      outputSeq: 0,
      runningRunId: null,
      queuedRuns: 0,
      ...session,
    },
    runs: [],
    output: [],
    outbox: [],
    nextId: 1,
  };
}

// ---------------------------------------------------------------------------------------
// Arbitrary states

const liveStatus = fc.constantFrom<SessionStatus>('initializing', 'active', 'idle', 'waiting_input');

/** Any session state: live in a live status, or ended (by status, or by a lapsed deadline). */
const sessionShape = fc.oneof(
  liveStatus.map((status) => ({ status, effectiveStatus: status, live: true })),
  fc.constantFrom(...ENDED_STATUSES).map((status) => ({ status, effectiveStatus: status, live: false })),
  liveStatus.map((status) => ({ status, effectiveStatus: 'expired' as SessionStatus, live: false })),
);

const runShape = fc.record({
  owner: fc.constantFrom(...OWNERS),
  lapsed: fc.boolean(),
  takesInput: fc.boolean(),
  stopping: fc.boolean(),
  /** A queued run inside its debounce window, or not. */
  startsInMs: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 5_000 })),
});

/**
 * Consistent session rows with their runs: a running run or not and 0..6 queued runs, each
 * with any owner and lease, after 0..3 completed runs. `idle` keeps to live sessions with no run.
 */
function modelRun(id: string, status: RunStatus, owner: string | null, fields: Partial<ModelRun> = {}): ModelRun {
  const input = fields.input ?? { n: id };
  return {
    id,
    status,
    owner,
    input,
    inputs: [input],
    steered: [],
    takesInput: false,
    startsInMs: 0,
    leaseLapsed: false,
    interruptRequested: false,
    startSeq: null,
    endSeq: null,
    endReason: null,
    ...fields,
  };
}

function lockStates(options: { idle?: boolean } = {}): fc.Arbitrary<{ model: Model }> {
  const idle = options.idle === true;
  return fc
    .record({
      shape: idle ? liveStatus.map((status) => ({ status, effectiveStatus: status, live: true })) : sessionShape,
      version: fc.integer({ min: 1, max: 1_000 }),
      running: idle ? fc.constant(null) : fc.option(runShape, { nil: null }),
      queued: idle ? fc.constant([]) : fc.array(runShape, { maxLength: 6 }),
      priorRuns: fc.nat({ max: 3 }),
    })
    .map(({ shape, version, running, queued, priorRuns }) => {
      const m = emptyModel({ ...shape, version });
      // Earlier runs that completed, so seqs do not start at the first.
      for (let i = 0; i < priorRuns; i++) {
        const id = `r${m.nextId++}`;
        const start = m.output.length + 1;
        m.runs.push(modelRun(id, 'completed', 'a', { startSeq: start, endSeq: start + 1, endReason: 'completed' }));
        m.output.push({ seq: start, runId: id, type: 'status', data: {} }, { seq: start + 1, runId: id, type: 'done', data: {} });
      }
      if (running) {
        const id = `r${m.nextId++}`;
        const start = m.output.length + 1;
        m.runs.push(modelRun(id, 'running', running.owner, {
            leaseLapsed: running.lapsed,
            startSeq: start,
            takesInput: running.takesInput,
            interruptRequested: running.stopping,
          }));
        m.output.push({ seq: start, runId: id, type: 'status', data: {} });
      }
      for (const q of queued) m.runs.push(modelRun(`r${m.nextId++}`, 'queued', q.owner, { leaseLapsed: q.lapsed, startsInMs: q.startsInMs }));
      m.session = {
        ...m.session,
        outputSeq: m.output.length,
        runningRunId: m.runs.find((r) => r.status === 'running')?.id ?? null,
        queuedRuns: queued.length,
      };
      return { model: m };
    });
}

const ifBusy = fc.constantFrom<IfBusy>(...IF_BUSY);
const endedStatus = fc.constantFrom<EndedRunStatus>('completed', 'failed', 'interrupted');
const DEBOUNCE_MS = 250;

function startRequest(m: Model, policy: IfBusy, owner: string, takesInput = false) {
  return {
    runId: `r${m.nextId}`,
    owner,
    input: { n: m.nextId },
    ifBusy: policy,
    maxQueued: MAX_QUEUED,
    leaseMs: LEASE_MS,
    debounceMs: DEBOUNCE_MS,
    takesInput,
  };
}

/** Admission as the repository runs it: the runs read only when the rule needs them. */
function admitOn(m: Model, policy: IfBusy, owner: string, takesInput = false) {
  const state = lockState(m);
  const read = admissionNeedsRuns(state.session, policy) ? state : { ...state, running: null, queued: [] };
  return admit(read, startRequest(m, policy, owner, takesInput));
}

// ---------------------------------------------------------------------------------------

/** What SPEC §7.1 says a start does to the model's rows: written from the spec's table, not from the rule. */
type Expected =
  | { refuse: string }
  | {
      decision: string;
      /** The run the decision concerns. */
      runId: string;
      /** A new run's status; absent when the input joined `runId`. */
      created?: 'running' | 'queued';
      /** A debounce window the new (or joined) run gets. */
      deferMs?: number;
      /** Queued runs ended by interrupt, cancelled by latest. */
      ended: string[];
      cancelled: string[];
      flagged: string | null;
    };

function expectedAdmission(m: Model, policy: IfBusy): Expected {
  const s = m.session;
  const running = m.runs.find((r) => r.status === 'running') ?? null;
  const queued = m.runs.filter((r) => r.status === 'queued');
  const tail = queued.at(-1) ?? null;
  const fresh = `r${m.nextId}`;
  const none = { ended: [], cancelled: [], flagged: null };
  if (!s.live) return { refuse: 'session_ended' };
  const busy = s.runningRunId !== null || s.queuedRuns > 0;
  const full = s.queuedRuns >= MAX_QUEUED;
  if (!busy) {
    return policy === 'debounce'
      ? { decision: 'debounced', runId: fresh, created: 'queued', deferMs: DEBOUNCE_MS, ...none }
      : { decision: 'started', runId: fresh, created: 'running', ...none };
  }
  const followUp = (): Expected =>
    tail ? { decision: 'merged', runId: tail.id, ...none } : full ? { refuse: 'queue_full' } : { decision: 'queued', runId: fresh, created: 'queued', ...none };
  switch (policy) {
    case 'reject':
      return { refuse: 'session_busy' };
    case 'enqueue':
      return full ? { refuse: 'queue_full' } : { decision: 'queued', runId: fresh, created: 'queued', ...none };
    case 'interrupt':
      return {
        decision: running ? 'interrupted' : 'started',
        runId: fresh,
        created: running ? 'queued' : 'running',
        ended: queued.map((r) => r.id),
        cancelled: [],
        flagged: running?.id ?? null,
      };
    case 'steer':
      // Into the running run when it reads input and was not asked to stop (it is ending: the input would be lost).
      return running?.takesInput && !running.interruptRequested ? { decision: 'steered', runId: running.id, ...none } : followUp();
    case 'merge':
      return followUp();
    case 'latest':
      return {
        decision: queued.length > 0 ? 'replaced' : 'queued',
        runId: fresh,
        created: running ? 'queued' : 'running',
        ended: [],
        cancelled: queued.map((r) => r.id),
        flagged: null,
      };
    case 'debounce':
      if (tail && tail.startsInMs > 0) return { decision: 'debounced', runId: tail.id, deferMs: DEBOUNCE_MS, ...none };
      return full ? { refuse: 'queue_full' } : { decision: 'debounced', runId: fresh, created: 'queued', deferMs: DEBOUNCE_MS, ...none };
  }
}

/** Admits on the model and checks the decision and everything the plan did against the spec's table. */
function checkAdmission(m: Model, policy: IfBusy, owner: string, takesInput: boolean): Model {
  const expected = expectedAdmission(m, policy);
  const a = admitOn(m, policy, owner, takesInput);
  if ('refuse' in expected) {
    // A refusal carries no plan: nothing is written.
    expect(a.decision === 'refuse' ? a.error.code : a.decision).toBe(expected.refuse);
    expect('plan' in a).toBe(false);
    return m;
  }
  if (a.decision === 'refuse') throw new Error(`refused ${a.error.code}; expected ${expected.decision}`);
  expect({ decision: a.decision, runId: a.runId, created: a.created }).toEqual({
    decision: expected.decision,
    runId: expected.runId,
    created: expected.created !== undefined,
  });
  const input = { n: m.nextId };
  const after = { ...apply(m, a.plan), nextId: m.nextId + 1 };
  checkInvariants(after);
  const was = (id: string) => m.runs.find((r) => r.id === id);
  const now = (id: string) => after.runs.find((r) => r.id === id);
  if (expected.created) {
    expect(now(expected.runId)).toMatchObject({
      status: expected.created,
      owner,
      inputs: [input],
      takesInput,
      startsInMs: expected.deferMs ?? 0,
    });
  } else if (expected.decision === 'steered') {
    expect(now(expected.runId)?.steered).toEqual([...(was(expected.runId)?.steered ?? []), input]);
    expect(now(expected.runId)?.inputs).toEqual(was(expected.runId)?.inputs);
  } else {
    // Merged or debounced into the last queued run: appended, in order; debounce moves its window.
    const before = was(expected.runId) as ModelRun;
    expect(now(expected.runId)).toMatchObject({ status: 'queued', inputs: [...before.inputs, input], startsInMs: expected.deferMs ?? before.startsInMs });
    expect(a.plan.session).toBeNull();
  }
  // Every other run is as it was, but for what the policy ends, cancels or flags.
  for (const r of m.runs) {
    const later = now(r.id) as ModelRun;
    if (r.id === expected.runId) continue;
    if (expected.cancelled.includes(r.id)) expect(later).toMatchObject({ status: 'cancelled', endReason: 'replaced' });
    else if (expected.ended.includes(r.id)) expect(later).toMatchObject({ status: 'interrupted', endReason: 'interrupted', interruptRequested: true });
    else if (expected.flagged === r.id) expect(later).toEqual({ ...r, interruptRequested: true });
    else expect(later).toEqual(r);
  }
  // Only latest cancels; only interrupt ends or flags.
  if (policy !== 'latest') expect(after.runs.filter((r) => r.status === 'cancelled').length).toBe(m.runs.filter((r) => r.status === 'cancelled').length);
  // Events: run.queued for a new queued run, run.cancelled / run.interrupted for what it ended, run.started when it starts.
  const types = a.plan.outbox.map((e) => e.type);
  expect(types.filter((t) => t === 'run.queued').length).toBe(expected.created === 'queued' ? 1 : 0);
  expect(types.filter((t) => t === 'run.started').length).toBe(expected.created === 'running' ? 1 : 0);
  expect(types.filter((t) => t === 'run.cancelled').length).toBe(expected.cancelled.length);
  expect(types.filter((t) => t === 'run.interrupted').length).toBe(expected.ended.length);
  // Output only when a run starts; the session's status and version move only then.
  expect(a.plan.output.length).toBe(expected.created === 'running' ? 1 : 0);
  if (expected.created !== 'running') expect(after.session).toMatchObject({ status: m.session.status, version: m.session.version });
  else expect(after.session).toMatchObject({ status: 'active', runningRunId: expected.runId });
  return after;
}

describe('admission', () => {
  it('refuses an ended session whatever the policy, and never touches its runs', () => {
    fc.assert(
      fc.property(lockStates(), ifBusy, fc.constantFrom(...OWNERS), ({ model }, policy, owner) => {
        fc.pre(!model.session.live);
        const a = admitOn(model, policy, owner);
        expect(a.decision).toBe('refuse');
        if (a.decision === 'refuse') {
          expect(a.error.code).toBe('session_ended');
          expect(a.error.details).toEqual({ status: model.session.effectiveStatus });
        }
      }),
    );
  });

  it('starts on a live session with no run (debounce: queues it with its window), whatever the policy', () => {
    fc.assert(
      fc.property(lockStates({ idle: true }), ifBusy, fc.constantFrom(...OWNERS), ({ model }, policy, owner) => {
        const a = admitOn(model, policy, owner);
        expect(a.decision).toBe(policy === 'debounce' ? 'debounced' : 'started');
        if (a.decision === 'refuse') return;
        const after = apply(model, a.plan);
        checkInvariants(after);
        const s = model.session;
        const id = `r${model.nextId}`;
        if (policy === 'debounce') {
          expect(after.session).toMatchObject({ status: s.status, version: s.version, runningRunId: null, queuedRuns: 1 });
          expect(after.runs.find((r) => r.id === id)).toMatchObject({ status: 'queued', startsInMs: DEBOUNCE_MS });
          expect(a.plan.outbox).toEqual([{ type: 'run.queued', payload: { run_id: id, input: { n: model.nextId }, owner, debounce_ms: DEBOUNCE_MS } }]);
          return;
        }
        expect(after.session).toMatchObject({ status: 'active', version: s.version + 1, runningRunId: id });
        expect(a.plan.output).toEqual([{ seq: s.outputSeq + 1, runId: id, type: 'status', data: { state: 'running', run_id: id } }]);
        const started = { type: 'run.started', payload: { run_id: id, input: { n: model.nextId }, owner } };
        expect(a.plan.outbox).toEqual(
          s.status === 'active'
            ? [started]
            : [{ type: 'session.status_changed', payload: { from: s.status, to: 'active', version: s.version + 1 } }, started],
        );
      }),
    );
  });

  it('follows every policy on every state as SPEC §7.1 says (decision, the run it names, every row, every event)', () => {
    fc.assert(
      fc.property(lockStates(), ifBusy, fc.constantFrom(...OWNERS), fc.boolean(), ({ model }, policy, owner, takesInput) => {
        checkAdmission(model, policy, owner, takesInput);
      }),
      { numRuns: 2_000 },
    );
  });

  it('decides every combination of status, liveness, running run (taking input or not), queue length, window and policy', () => {
    const shapes = [
      ...SESSION_STATUSES.map((status) => ({ status, effectiveStatus: status, live: !ENDED_STATUSES.includes(status) })),
      ...(['initializing', 'active', 'idle', 'waiting_input'] as const).map((status) => ({
        status,
        effectiveStatus: 'expired' as SessionStatus,
        live: false,
      })),
    ];
    let combinations = 0;
    for (const shape of shapes) {
      for (const running of ['none', 'takes-input', 'no-input', 'stopping'] as const) {
        for (let queued = 0; queued <= MAX_QUEUED + 1; queued++) {
          for (const tailDeferred of queued === 0 ? [false] : [false, true]) {
            for (const policy of IF_BUSY) {
              const m = emptyModel(shape);
              if (running !== 'none') {
                m.runs.push(
                  modelRun('r1', 'running', 'a', { startSeq: 1, takesInput: running !== 'no-input', interruptRequested: running === 'stopping' }),
                );
                m.output.push({ seq: 1, runId: 'r1', type: 'status', data: {} });
              }
              for (let i = 0; i < queued; i++) {
                m.runs.push(modelRun(`q${i}`, 'queued', 'b', { startsInMs: tailDeferred && i === queued - 1 ? 100 : 0 }));
              }
              m.session = { ...m.session, outputSeq: m.output.length, runningRunId: running !== 'none' ? 'r1' : null, queuedRuns: queued };
              m.nextId = 100;
              checkAdmission(m, policy, 'c', false);
              combinations++;
            }
          }
        }
      }
    }
    expect(combinations).toBe(11 * 4 * (1 + 2 * (MAX_QUEUED + 1)) * IF_BUSY.length);
  });

  it('reads the runs (under lock) for exactly the policies that look at them', () => {
    fc.assert(
      fc.property(lockStates(), ifBusy, ({ model }, policy) => {
        const s = model.session;
        const busy = s.runningRunId !== null || s.queuedRuns > 0;
        expect(admissionNeedsRuns(s, policy)).toBe(s.live && busy && policy !== 'reject' && policy !== 'enqueue');
      }),
    );
  });

  it('refuses invalid_transition only for a status that cannot become active', () => {
    fc.assert(
      fc.property(fc.constantFrom(...SESSION_STATUSES), ifBusy, (status, policy) => {
        // A live row in a status no run may start from: no live status is one today.
        const m = emptyModel({ status, effectiveStatus: status, live: true });
        const a = admitOn(m, policy, 'a');
        if (a.decision === 'refuse') {
          expect(a.error.code).toBe(['terminated', 'failed', 'expired'].includes(status) ? 'session_ended' : 'invalid_transition');
          expect(['initializing', 'active', 'idle', 'waiting_input']).not.toContain(status);
        }
      }),
    );
  });
});

describe('debounced runs', () => {
  it('start when their window closed, they head the queue and nothing runs; else wait or leave it to the run ahead', () => {
    fc.assert(
      fc.property(lockStates(), fc.nat(), ({ model }, pick) => {
        const queued = model.runs.filter((r) => r.status === 'queued');
        const target = queued[pick % Math.max(1, queued.length)];
        fc.pre(target !== undefined);
        const t = target as ModelRun;
        const decided = planDuePromotion(lockState(model), t.id, LEASE_MS);
        const s = model.session;
        const heads = queued[0]?.id === t.id && s.runningRunId === null;
        if (!heads) {
          expect(decided.kind).toBe('none');
          return;
        }
        if (!s.live) {
          expect(decided.kind).toBe('end');
        } else if (t.startsInMs > 0) {
          expect(decided).toEqual({ kind: 'wait', waitMs: t.startsInMs });
          return;
        } else {
          expect(decided.kind).toBe('promote');
        }
        if (decided.kind !== 'promote' && decided.kind !== 'end') return;
        const after = apply(model, decided.plan);
        checkInvariants(after);
        expect(after.runs.find((r) => r.id === t.id)?.status).toBe(decided.kind === 'promote' ? 'running' : 'interrupted');
        if (decided.kind === 'promote') {
          expect(after.session).toMatchObject({ status: 'active', runningRunId: t.id });
          expect(decided.plan.outbox.at(-1)).toEqual({ type: 'run.started', payload: { run_id: t.id, input: t.inputs[0], owner: t.owner } });
        }
      }),
      { numRuns: 1_000 },
    );
  });
});

describe('finalization', () => {
  const requests = fc.record({
    pick: fc.nat(),
    sweep: fc.boolean(),
    owner: fc.constantFrom(...OWNERS),
    status: endedStatus,
    sessionStatus: fc.constantFrom<'idle' | 'waiting_input'>('idle', 'waiting_input'),
    error: fc.option(fc.string({ maxLength: 8 }), { nil: null }),
    details: fc.option(fc.dictionary(fc.constantFrom('interrupt', 'x'), fc.integer()), { nil: undefined }),
  });

  it('ends a run exactly as the rules say, for every state and request', () => {
    fc.assert(
      fc.property(lockStates(), requests, ({ model }, q) => {
        const ids = model.runs.map((r) => r.id);
        // Also a run that ended already or does not exist.
        const runId = ids.length === 0 || q.pick % (ids.length + 1) === ids.length ? 'r999' : (ids[q.pick % ids.length] as string);
        const target = model.runs.find((r) => r.id === runId);
        const req = {
          runId,
          owner: q.sweep ? null : q.owner,
          status: q.status,
          reason: 'because',
          error: q.error,
          details: q.details,
          sessionStatus: q.sessionStatus,
          leaseMs: LEASE_MS,
        };
        const f = planFinalization(lockState(model), req);
        const eligible =
          target !== undefined &&
          (target.status === 'running' || target.status === 'queued') &&
          (q.sweep ? target.leaseLapsed : target.owner === q.owner);
        expect(f !== null).toBe(eligible);
        if (!f || !target) return;
        const s = model.session;
        const after = apply(model, f.plan);
        checkInvariants(after);
        const wasRunning = target.status === 'running';
        const waiting = model.runs.filter((r) => r.status === 'queued' && r.id !== runId);
        expect(after.runs.find((r) => r.id === runId)).toMatchObject({ status: q.status, endReason: 'because' });
        // The terminal event: exactly when a running run ends, right after the last seq, with today's data.
        const terminal = f.plan.output.filter((e) => e.runId === runId);
        if (wasRunning) {
          expect(terminal).toEqual([
            {
              seq: s.outputSeq + 1,
              runId,
              type: q.status === 'failed' ? 'error' : 'done',
              data: { run_id: runId, status: q.status, reason: 'because', ...(q.error === null ? {} : { error: q.error }), ...(q.details ?? {}) },
            },
          ]);
        } else {
          expect(terminal).toEqual([]);
        }
        // The head of the queue starts only after a running run, on a live session; an ended
        // session ends what was queued instead.
        const head = waiting[0];
        // A head inside its debounce window stays queued; a queued run that ends with nothing running releases the next.
        if ((wasRunning || s.runningRunId === null) && head && s.live && head.startsInMs === 0) {
          expect(f.promoted).toBe(head.id);
          expect(after.session.runningRunId).toBe(head.id);
          expect(f.plan.outbox.at(-1)).toEqual({ type: 'run.started', payload: { run_id: head.id, input: head.input, owner: head.owner } });
        } else {
          expect(f.promoted).toBeNull();
        }
        if (wasRunning && !s.live) {
          expect(after.runs.filter((r) => r.status === 'queued')).toEqual([]);
          expect(f.cancelled).toEqual(waiting.map((r) => r.id));
          for (const id of f.cancelled) expect(after.runs.find((r) => r.id === id)?.endReason).toBe('session_ended');
        } else {
          expect(f.cancelled).toEqual([]);
        }
        // The session leaves `active` only when nothing else runs and it is still live; its
        // version moves exactly when its status is written.
        const left = s.status === 'active' && after.session.status !== 'active';
        expect(left).toBe(s.status === 'active' && wasRunning && f.promoted === null && s.live);
        if (left) expect(after.session.status).toBe(q.sessionStatus);
        // A queued run that starts on a session where nothing ran makes it `active`.
        const entered = !wasRunning && f.promoted !== null;
        if (entered) expect(after.session.status).toBe('active');
        expect(after.session.version).toBe(left || entered ? s.version + 1 : s.version);
        // Outbox order: the status change, the run's end, then what it released.
        const types = f.plan.outbox.map((e) => e.type);
        const runEnded = { completed: 'run.completed', failed: 'run.failed', interrupted: 'run.interrupted', cancelled: 'run.cancelled' }[q.status];
        expect(types).toEqual([
          ...(left || (entered && s.status !== 'active') ? ['session.status_changed'] : []),
          runEnded,
          ...f.cancelled.map(() => 'run.interrupted'),
          ...(f.promoted ? ['run.started'] : []),
        ]);
        if (left) {
          expect(f.plan.outbox[0]?.payload).toEqual({ from: 'active', to: q.sessionStatus, version: s.version + 1 });
        }
      }),
      { numRuns: 500 },
    );
  });
});

describe('persisting output', () => {
  it('appends the running run\'s output exactly when it asked to, ended completed or interrupted, on a live session', () => {
    fc.assert(
      fc.property(lockStates(), fc.boolean(), endedStatus, fc.boolean(), ({ model }, persistOutput, status, sweep) => {
        const state = lockState(model);
        const running = state.running ? { ...state.running, persistOutput } : null;
        const queued = state.queued.map((r) => ({ ...r, persistOutput }));
        const target = running ?? queued[0];
        fc.pre(target !== undefined);
        const t = target as ActiveRun;
        const f = planFinalization({ ...state, running, queued }, {
          runId: t.id,
          owner: sweep ? null : t.owner,
          status,
          reason: 'because',
          error: null,
          sessionStatus: 'idle',
          leaseMs: LEASE_MS,
        });
        if (!f) return;
        const expected = t.status === 'running' && persistOutput && status !== 'failed' && state.session.live;
        expect(f.plan.persist).toEqual(expected ? { runId: t.id } : undefined);
      }),
      { numRuns: 500 },
    );
  });

  it('carries the flag into the run row a start inserts, running or queued', () => {
    fc.assert(
      fc.property(lockStates(), ifBusy, fc.boolean(), ({ model }, policy, persistOutput) => {
        const admission = admit(lockState(model), { ...startRequest(model, policy, 'a'), persistOutput });
        if (admission.decision === 'refuse') return;
        if (!admission.created) return;
        const inserted = admission.plan.runs.find((w) => w.kind === 'insert');
        expect(inserted).toMatchObject({ persistOutput });
        expect(admission.plan.persist).toBeUndefined();
      }),
      { numRuns: 200 },
    );
  });
});

describe('interrupt', () => {
  it('flags the running run, or cancels the queued run named; nothing else', () => {
    fc.assert(
      fc.property(lockStates(), fc.nat(), fc.boolean(), ({ model }, pick, named) => {
        const ids = model.runs.map((r) => r.id);
        const runId = named && ids.length > 0 ? ids[pick % ids.length] : undefined;
        const target = runId === undefined ? model.runs.find((r) => r.status === 'running') : model.runs.find((r) => r.id === runId);
        const decided = planInterrupt(lockState(model), runId);
        if (!decided.plan) {
          expect(target === undefined || (target.status !== 'running' && target.status !== 'queued')).toBe(true);
          return;
        }
        const after = apply(model, decided.plan);
        checkInvariants(after);
        if (target?.status === 'running') {
          expect(decided.flagged).toBe(target.id);
          expect(after.runs.find((r) => r.id === target.id)).toMatchObject({ status: 'running', interruptRequested: true });
        } else {
          expect(decided.cancelled).toBe(target?.id);
          expect(after.runs.find((r) => r.id === target?.id)).toMatchObject({ status: 'interrupted', endReason: 'interrupted' });
          expect(decided.plan.outbox.map((e) => e.type)).toEqual(['run.interrupted']);
        }
        expect(after.output).toEqual(model.output);
      }),
    );
  });
});

describe('histories', () => {
  type Op =
    | { op: 'start'; ifBusy: IfBusy; owner: string; takesInput: boolean }
    | { op: 'window-closes' }
    | { op: 'finalize'; pick: number; sweep: boolean; status: EndedRunStatus; sessionStatus: 'idle' | 'waiting_input' }
    | { op: 'emit'; n: number }
    | { op: 'interrupt'; pick: number; named: boolean }
    | { op: 'lapse'; pick: number }
    | { op: 'end-session'; how: 'terminate' | 'expire' };

  const ops: fc.Arbitrary<Op> = fc.oneof(
    {
      weight: 6,
      arbitrary: fc.record({ op: fc.constant('start' as const), ifBusy, owner: fc.constantFrom(...OWNERS), takesInput: fc.boolean() }),
    },
    { weight: 1, arbitrary: fc.constant({ op: 'window-closes' as const }) },
    {
      weight: 4,
      arbitrary: fc.record({
        op: fc.constant('finalize' as const),
        pick: fc.nat(),
        sweep: fc.boolean(),
        status: endedStatus,
        sessionStatus: fc.constantFrom<'idle' | 'waiting_input'>('idle', 'waiting_input'),
      }),
    },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('emit' as const), n: fc.integer({ min: 1, max: 3 }) }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('interrupt' as const), pick: fc.nat(), named: fc.boolean() }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('lapse' as const), pick: fc.nat() }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('end-session' as const), how: fc.constantFrom<'terminate' | 'expire'>('terminate', 'expire') }) },
  );

  function step(m: Model, o: Op): Model {
    const active = m.runs.filter((r) => r.status === 'running' || r.status === 'queued');
    switch (o.op) {
      case 'start':
        return checkAdmission(m, o.ifBusy, o.owner, o.takesInput);
      case 'window-closes': {
        // Every debounce window closes; the owner's timer asks to start the head (planDuePromotion).
        let after: Model = { ...m, runs: m.runs.map((r) => (r.status === 'queued' ? { ...r, startsInMs: 0 } : r)) };
        const head = after.runs.find((r) => r.status === 'queued');
        if (!head) return after;
        const due = planDuePromotion(lockState(after), head.id, LEASE_MS);
        if (due.kind === 'promote' || due.kind === 'end') after = apply(after, due.plan);
        return after;
      }
      case 'finalize': {
        const target = active[o.pick % Math.max(1, active.length)];
        if (!target) return m;
        const f = planFinalization(lockState(m), {
          runId: target.id,
          owner: o.sweep ? null : target.owner,
          status: o.status,
          reason: o.sweep ? 'owner_lost' : o.status,
          error: o.status === 'failed' ? 'boom' : null,
          sessionStatus: o.sessionStatus,
          leaseMs: LEASE_MS,
        });
        expect(f !== null).toBe(!o.sweep || target.leaseLapsed);
        return f ? apply(m, f.plan) : m;
      }
      case 'emit': {
        // A runner's output (run-output-append): only while its run is the running run.
        const runId = m.session.runningRunId;
        if (runId === null) return m;
        const events = Array.from({ length: o.n }, (_, i) => ({ seq: m.session.outputSeq + 1 + i, runId, type: 'text', data: {} }));
        return { ...m, session: { ...m.session, outputSeq: m.session.outputSeq + o.n }, output: [...m.output, ...events] };
      }
      case 'interrupt': {
        const runId = o.named && m.runs.length > 0 ? m.runs[o.pick % m.runs.length]?.id : undefined;
        const decided = planInterrupt(lockState(m), runId, LEASE_MS);
        return decided.plan ? apply(m, decided.plan) : m;
      }
      case 'lapse': {
        const target = active[o.pick % Math.max(1, active.length)];
        if (!target) return m;
        return { ...m, runs: m.runs.map((r) => (r.id === target.id ? { ...r, leaseLapsed: true } : r)) };
      }
      case 'end-session':
        return {
          ...m,
          session:
            o.how === 'terminate'
              ? { ...m.session, status: 'terminated', effectiveStatus: 'terminated', live: false, version: m.session.version + 1 }
              : { ...m.session, effectiveStatus: 'expired', live: false },
        };
    }
  }

  it('keep every invariant over random sequences of starts, output, interrupts, finalizations and session ends', () => {
    fc.assert(
      fc.property(fc.array(ops, { maxLength: 40 }), (history) => {
        let m = emptyModel();
        for (const o of history) {
          const before = m;
          m = step(m, o);
          checkInvariants(m);
          // The session leaves `active` only when nothing runs and it is live (or it was ended).
          if (before.session.status === 'active' && m.session.status !== 'active' && o.op !== 'end-session') {
            expect(m.session.runningRunId).toBeNull();
            expect(before.session.live).toBe(true);
          }
          // Every admitted input is in exactly one run (its inputs, or steered into it), in admission order.
          const admitted = Array.from({ length: m.nextId - 1 }, (_, i) => i + 1);
          const held = m.runs.flatMap((r) => [...r.inputs, ...r.steered].map((x) => (x as { n: number }).n));
          expect([...held].sort((x, y) => x - y)).toEqual(admitted);
          for (const r of m.runs) {
            const ns = r.inputs.map((x) => (x as { n: number }).n);
            expect(ns).toEqual([...ns].sort((x, y) => x - y));
          }
          // A live session never holds a queue nothing will start: something runs, or the head waits for its window.
          if (m.session.live && m.session.runningRunId === null) {
            const head = m.runs.find((r) => r.status === 'queued');
            if (head) expect(head.startsInMs).toBeGreaterThan(0);
          }
          // An ended session never starts a run again.
          if (!before.session.live) expect(m.runs.filter((r) => r.status === 'running' && !before.runs.some((b) => b.id === r.id && b.status === 'running'))).toEqual([]);
        }
      }),
      { numRuns: 1_000 },
    );
  });
});
