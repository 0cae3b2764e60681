/**
 * The internal entry: the public API plus what the server, the CLI and the tests use beyond
 * it (the parts of a `Sessions`, database helpers). Not an export of the package.
 */
export * from './index.js';
export { internals, type SessionsParts } from './app/internal.js';
export { checkServerVersion, MIN_POSTGRES_VERSION, openDatabase } from './app/assemble.js';
