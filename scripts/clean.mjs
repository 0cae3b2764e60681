// Empties the build output before a build: tsc never deletes what a removed or moved source
// once emitted, and `npm pack` would ship those stale files with the package.
import { rmSync } from 'node:fs';

rmSync(process.argv[2] ?? 'dist', { recursive: true, force: true });
