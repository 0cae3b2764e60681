/**
 * The wire contract of the v1 HTTP API: one TypeBox module per resource with its mappers.
 * The server validates and serializes with these schemas; the client types its calls with
 * them. Imports only typebox and core types.
 */
export * from './common.js';
export * from './errors.js';
export * from './sessions.js';
export * from './items.js';
export * from './runs.js';
export * from './events.js';
export * from './keys.js';
export * from './erasure.js';
export * from './stats.js';
