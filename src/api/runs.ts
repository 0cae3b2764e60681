/**
 * Runs on the wire: start, list, get, interrupt, input, and the output stream's frames
 * (Server-Sent Events: `id:` = seq, `event:` = type, `data:` = the event as JSON).
 */
import { Type, type Static } from 'typebox';
import { IF_BUSY, MAX_DEBOUNCE_MS, MAX_INTERRUPT_WAIT_MS, ON_OWNER_LOST, RUN_DECISIONS, RUN_STATUSES, outputDataJson, type AdmittedRun, type OutputEvent, type Run } from '../core/runs.js';
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
  agent: Nullable(Type.String({ description: 'The agent that executes it; null: a run pinned to the instance that started it' })),
  on_owner_lost: StringEnum(ON_OWNER_LOST),
  max_retries: Type.Integer(),
  attempts: Type.Integer({ description: 'Restarts after its owner was lost' }),
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
    agent: Type.Optional(
      Type.String({
        pattern: '^[A-Za-z0-9][\\w.:-]{0,63}$',
        description: 'The agent to run (default: the server\'s AGENT_NAME); any instance serving it executes the run',
      }),
    ),
    on_owner_lost: Type.Optional(
      StringEnum(ON_OWNER_LOST, {
        description: 'When the instance executing the run is lost: fail it (owner_lost, the default) or restart it on another worker',
      }),
    ),
    max_retries: Type.Optional(Type.Integer({ minimum: 0, maximum: 100, description: 'With on_owner_lost retry: at most this many restarts (default 0)' })),
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
    agent: r.agent,
    on_owner_lost: r.onOwnerLost,
    max_retries: r.maxRetries,
    attempts: r.attempts,
  };
}

export function startedRunJson(r: AdmittedRun): StartedRunJsonType {
  return { ...runJson(r), decision: r.decision };
}

export function outputEventJson(e: OutputEvent): OutputEventJson {
  return { seq: e.seq, run_id: e.runId, type: e.type, data: e.data, created_at: e.createdAt };
}

/**
 * One SSE frame: `outputEventJson(e)` as JSON, with the data's JSON text spliced in where a step
 * already had it. JSON never contains a raw newline, so `data:` is always one line.
 */
export function outputEventFrame(e: OutputEvent): string {
  const json = `{"seq":${e.seq},"run_id":${JSON.stringify(e.runId)},"type":${JSON.stringify(e.type)},"data":${outputDataJson(e)},"created_at":${JSON.stringify(e.createdAt)}}`;
  return `id: ${e.seq}\nevent: ${e.type}\ndata: ${json}\n\n`;
}

/** `Last-Event-ID` of a run stream: an output seq, or absent. */
export const LAST_EVENT_ID = /^\s*\d{1,15}\s*$/;
