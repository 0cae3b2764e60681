import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    environment: 'node',
    include: ['test/**/*.test.ts'],
    // Finds or starts PostgreSQL, Redis and NATS once per run; see test/setup/global.ts. The
    // second gives the run one directory to build the package into (test/setup/built-package.ts).
    globalSetup: ['test/setup/global.ts', 'test/setup/built-package.global.ts'],
    // Real services and PGlite (WebAssembly) start slowly on a small machine.
    testTimeout: 60_000,
    hookTimeout: 120_000,
    teardownTimeout: 60_000,
    // Child processes, not threads: PGlite and native sockets behave as in production.
    pool: 'forks',
    // Two cores: two test files at a time, each with its own services isolation.
    maxWorkers: 2,
  },
});
