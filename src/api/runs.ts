/**
 * Runs on the wire: start, list, get, interrupt, input, and the output stream's frames
 * (Server-Sent Events: `id:` = seq, `event:` = type, `data:` = the event as JSON).
 */
import { Type, type Static } from 'typebox';
import { IF_BUSY, MAX_DEBOUNCE_MS, MAX_INTERRUPT_WAIT_MS, RUN_DECISIONS, RUN_STATUSES, type AdmittedRun, type OutputEvent, type Run } from '../core/runs.js';
import { Cursor, DateTime, Nullable, RunId, SessionId, StringEnum } from './common.js';

export const RunStatus = StringEnum(RUN_STATUSES);

export const RunJson = Type.Object({
  id: Type.String(),
  session_id: Type.String(),
  status: RunStatus,
  owner: Nullable(Type.String()),
  input: Type.Unknown({ description: 'The first of inputs' }),
  inputs: Type.Array(Type.Unknown(), { description: 'Every input the run starts with, in arrival order (one unless merged or debounced)' }),
  not_before: Nullable(DateTime),
  takes_input: Type.Boolean(),
  error: Nullable(Type.String()),
  end_reason: Nullable(Type.String()),
  interrupt_requested_at: Nullable(DateTime),
  lease_expires_at: Nullable(DateTime),
  created_at: DateTime,
  started_at: Nullable(DateTime),
  ended_at: Nullable(DateTime),
  start_seq: Nullable(Type.Integer()),
  end_seq: Nullable(Type.Integer()),
  persist_output: Type.Boolean(),
});
export type RunJsonType = Static<typeof RunJson>;

export const IfBusy = StringEnum(IF_BUSY, {
  description:
    'When the session has a run: reject (409 session_busy), enqueue behind it, interrupt it and run after it, steer the input ' +
    'into it, latest (cancel what is queued, queue this), merge into the queued run, or debounce (with debounce_ms)',
});
export type IfBusyJson = Static<typeof IfBusy>;

export const StartRunBody = Type.Object(
  {
    input: Type.Optional(Type.Unknown()),
    if_busy: Type.Optional(IfBusy),
    debounce_ms: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: MAX_DEBOUNCE_MS,
        description: 'With if_busy debounce (required there): inputs that arrive within this many ms of the last one become one run',
      }),
    ),
    persist_output: Type.Optional(
      Type.Boolean({
        description:
          'Append the run\'s text output to the history as one assistant message when it completes or is interrupted (default false)',
      }),
    ),
  },
  { additionalProperties: false },
);
export type StartRunJson = Static<typeof StartRunBody>;

export const RunDecision = StringEnum(RUN_DECISIONS, {
  description: 'What the admission did: started, queued, steered, merged, replaced, debounced or interrupted',
});

/** A start's answer: the run the decision concerns (new, or the one the input went into) and the decision. */
export const StartedRunJson = Type.Object({ ...RunJson.properties, decision: RunDecision });
export type StartedRunJsonType = Static<typeof StartedRunJson>;

export const RunPage = Type.Object({ runs: Type.Array(RunJson), next_cursor: Nullable(Type.String()) });
export type RunPageJson = Static<typeof RunPage>;

export const RunParams = Type.Object({ id: SessionId, runId: RunId }, { additionalProperties: false });

export const ListRunsQuery = Type.Object(
  {
    cursor: Type.Optional(Cursor),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100 })),
  },
  { additionalProperties: false },
);

export const InterruptQuery = Type.Object(
  {
    wait_ms: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: MAX_INTERRUPT_WAIT_MS,
        description: 'Wait up to this long for the run to end: 200 with the ended run, or 202 with the run as it is when the time ran out',
      }),
    ),
  },
  { additionalProperties: false },
);

export const InterruptBody = Type.Union([
  Type.Object({ run_id: Type.Optional(RunId) }, { additionalProperties: false }),
  Type.Null(),
]);

export const InputBody = Type.Object(
  { input: Type.Unknown(), run_id: Type.Optional(RunId) },
  { additionalProperties: false, required: ['input'] },
);
export const InputResponse = Type.Object({ run_id: Type.String(), seq: Type.Integer() });
export type InputSentJson = Static<typeof InputResponse>;

export const StreamQuery = Type.Object(
  { after: Type.Optional(Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER })) },
  { additionalProperties: false },
);
export const StreamHeaders = Type.Object({ 'last-event-id': Type.Optional(Type.String({ maxLength: 32 })) });

/** The `data:` of one output event on the stream. */
export const OutputEventJson = Type.Object({
  seq: Type.Integer(),
  run_id: Type.String(),
  type: Type.String(),
  data: Type.Unknown(),
  created_at: DateTime,
});
export type OutputEventJson = Static<typeof OutputEventJson>;

export function runJson(r: Run): RunJsonType {
  return {
    id: r.id,
    session_id: r.sessionId,
    status: r.status,
    owner: r.owner,
    input: r.input,
    inputs: r.inputs,
    not_before: r.notBefore,
    takes_input: r.takesInput,
    error: r.error,
    end_reason: r.endReason,
    interrupt_requested_at: r.interruptRequestedAt,
    lease_expires_at: r.leaseExpiresAt,
    created_at: r.createdAt,
    started_at: r.startedAt,
    ended_at: r.endedAt,
    start_seq: r.startSeq,
    end_seq: r.endSeq,
    persist_output: r.persistOutput,
  };
}

export function startedRunJson(r: AdmittedRun): StartedRunJsonType {
  return { ...runJson(r), decision: r.decision };
}

export function outputEventJson(e: OutputEvent): OutputEventJson {
  return { seq: e.seq, run_id: e.runId, type: e.type, data: e.data, created_at: e.createdAt };
}

/** One SSE frame. JSON never contains a raw newline, so `data:` is always one line. */
export function outputEventFrame(e: OutputEvent): string {
  return `id: ${e.seq}\nevent: ${e.type}\ndata: ${JSON.stringify(outputEventJson(e))}\n\n`;
}

/** `Last-Event-ID` of a run stream: an output seq, or absent. */
export const LAST_EVENT_ID = /^\s*\d{1,15}\s*$/;
