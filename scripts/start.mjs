// `npm start` / `npm run migrate`: runs the built CLI with the given command (serve, migrate),
// building first only when dist/ is missing or older than a source (see build.mjs), so a
// second start does not recompile anything.
import { pathToFileURL } from 'node:url';
import path from 'node:path';
import { build, OUT_DIR, staleReason } from './build.mjs';

const reason = staleReason();
if (reason !== null) {
  const started = Date.now();
  process.stderr.write(`agent-sessions: building (${reason})...\n`);
  build();
  process.stderr.write(`agent-sessions: built in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
}
const cli = path.join(OUT_DIR, 'cli', 'index.js');
// The CLI parses process.argv: make it read as `agent-sessions <command> [args]`.
process.argv = [process.argv[0], cli, ...process.argv.slice(2)];
await import(pathToFileURL(cli).href);
