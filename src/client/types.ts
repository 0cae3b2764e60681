/**
 * The wire shapes of the v1 API as the client sees them: the contract's own types (snake_case
 * JSON) from src/api, which the server validates and serializes with, so client and server
 * cannot drift apart.
 */
export type {
  AppendItemsJson,
  ApiKeyJson,
  BatchDeleteJson,
  BatchGetJson,
  ClearJson,
  CountersJson,
  CreatedKeyJson,
  CreateKeyJson,
  ErasedJson,
  CreateSessionJson,
  EventJson,
  ForkSessionJson,
  IfBusyJson,
  InputSentJson,
  ItemJson,
  ItemPageJson,
  KeyListJson,
  ListItemsQueryJson,
  ListSessionsQueryJson,
  NewItemJson,
  OutputEventJson,
  PopJson,
  ProblemBody as ProblemJson,
  ProblemCode,
  ReadyJson,
  RunJsonType as RunJson,
  RunPageJson,
  SessionJson,
  SessionPageJson,
  StartRunJson,
  StatsJson,
  UpdateSessionJson,
} from '../api/index.js';
