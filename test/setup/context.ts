/** What the global setup hands to test files through Vitest's `provide`/`inject`. */
import type { Services } from './services.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Each service: available or not, its URL, where it came from, why not. */
    services: Services;
    /** REQUIRE_SERVICES was set: a missing service fails the run instead of skipping suites. */
    requireServices: boolean;
    /** A file the test workers append `SKIPPED (...)` lines to; the global teardown prints it. */
    skipLog: string;
  }
}

export {};
