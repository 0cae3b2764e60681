/** The event feed on the wire: `GET /v1/events`, Server-Sent Events of the outbox's envelopes. */
import { Type, type Static } from 'typebox';
import type { EventEnvelope } from '../core/ports.js';
import { DateTime, Nullable, SessionId, toSnake } from './common.js';

const EventId = Type.String({ pattern: '^[0-9]{1,15}$', description: 'An event id' });

export const EventsQuery = Type.Object(
  {
    after: Type.Optional({ ...EventId, description: 'Start after this event id (Last-Event-ID wins when both are sent)' }),
    type: Type.Optional(
      Type.Array(Type.String({ maxLength: 400 }), {
        maxItems: 20,
        description: 'Only these event types (repeat the parameter or separate with commas)',
      }),
    ),
    session_id: Type.Optional({ ...SessionId, description: 'Only this session’s events' }),
  },
  { additionalProperties: false },
);

export const EventsHeaders = Type.Object({ 'last-event-id': Type.Optional(Type.String({ maxLength: 64 })) });

/** An event on the feed (SPEC §8 envelope), as `data:` of its SSE frame. */
export const EventJson = Type.Object({
  id: Type.Integer(),
  type: Type.String(),
  tenant_id: Type.String(),
  session_id: Nullable(Type.String()),
  occurred_at: DateTime,
  data: Type.Unknown(),
});
export type EventJson = Static<typeof EventJson>;

export function eventJson(e: EventEnvelope): EventJson {
  return toSnake(e);
}

export function eventFrame(e: EventEnvelope): string {
  return `id: ${e.id}\nevent: ${e.type}\ndata: ${JSON.stringify(eventJson(e))}\n\n`;
}

/** `Last-Event-ID` or `after` of the feed: an event id. */
export const EVENT_ID = /^[0-9]{1,15}$/;
