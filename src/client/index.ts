/** The HTTP client of agent-sessions (also importable alone as `agent-sessions/client`). */
export {
  AgentSessionsClient,
  ItemsClient,
  AdminClient,
  KeysClient,
  RunsClient,
  type AgentSessionsClientOptions,
  type EventFeedOptions,
  type FetchFunction,
  type RequestOptions,
  type RunStreamOptions,
  type StartRunRequestOptions,
  type StreamRequestOptions,
  type WriteRequestOptions,
} from './client.js';
export { AgentSessionsHttpError, isAgentSessionsHttpError } from './errors.js';
export { parseSse, type SseMessage } from './sse.js';
export type * from './types.js';
