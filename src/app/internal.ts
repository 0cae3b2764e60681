/**
 * The parts a `Sessions` is made of, for the code of this package that needs more than the
 * library API: the HTTP server (keys, limiters, metrics), the CLI, and tests that look at
 * the database. Not exported from the package: users get the facade only.
 *
 *   import { internals } from '../../src/internal.js';
 *   await internals(sessions).db.query('SELECT ...');
 */
import type { SessionsParts } from './parts.js';
import { registeredParts } from './registry.js';
import type { Sessions } from './sessions.js';

export type { SessionsParts } from './parts.js';

export function internals(sessions: Sessions): SessionsParts {
  return registeredParts(sessions) as SessionsParts;
}
