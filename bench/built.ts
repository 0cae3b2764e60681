/**
 * What the bench runs: the package as it ships, the tsc output in dist/ (what `npm start`, the
 * CLI and the published package run), built first when it is missing or older than a source.
 * Not the sources through tsx: its transform keeps function names by wrapping every named
 * closure in an `Object.defineProperty` call each time the closure is created (esbuild's
 * keepNames), which was about 10 % of a Redis hit's CPU profile, work the shipped code never
 * does. BENCH_SOURCE=1 runs the sources through tsx instead (no build).
 */
import { fileURLToPath, pathToFileURL } from 'node:url';
// @ts-expect-error scripts/build.mjs is plain JavaScript without type declarations.
import { build, staleReason } from '../scripts/build.mjs';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Whether this process runs the sources (BENCH_SOURCE=1), read when asked. */
export function fromSource(): boolean {
  return process.env.BENCH_SOURCE === '1';
}

let ready = false;

/** Builds dist/ when it is stale (once per process). */
export function ensureBuilt(source = fromSource()): void {
  // A process the bench started (BENCH_BUILT=1) uses the build its parent checked: a build
  // empties dist/ first, under the processes already running from it.
  if (ready || source || process.env.BENCH_BUILT === '1') return;
  const reason = (staleReason as () => string | null)();
  if (reason) {
    process.stderr.write(`bench: building dist/ (${reason})...\n`);
    (build as () => void)();
  }
  ready = true;
}

/**
 * The module at `src/<path>.ts` as the bench runs it: `dist/<path>.js`, or the source itself
 * with BENCH_SOURCE=1. Typed by the source: `load<typeof import('../src/cli/bench.js')>('cli/bench')`.
 */
export async function load<T>(path: string, source = fromSource()): Promise<T> {
  ensureBuilt(source);
  const file = source ? `src/${path}.ts` : `dist/${path}.js`;
  return (await import(pathToFileURL(`${ROOT}${file}`).href)) as T;
}

/** Node arguments that run the CLI: the built one, or the source through tsx. */
export function cliArgs(source = fromSource()): string[] {
  ensureBuilt(source);
  return source ? ['--import', 'tsx', 'src/cli/index.ts'] : ['dist/cli/index.js'];
}
