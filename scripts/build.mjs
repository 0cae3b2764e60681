// The build: empty the output directory, compile src/ with tsc, copy the non-TypeScript
// assets, and last write dist/.build-stamp, whose time says when dist/ was last complete.
// scripts/start.mjs compares it with the sources to skip a build when nothing changed.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const OUT_DIR = path.join(ROOT, 'dist');
const STAMP = path.join(OUT_DIR, '.build-stamp');
/** What the build reads besides src/. */
const CONFIG_FILES = ['tsconfig.json', 'tsconfig.build.json'];

function newest(dir) {
  let latest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    latest = Math.max(latest, entry.isDirectory() ? newest(full) : statSync(full).mtimeMs);
  }
  return latest;
}

/** Why dist/ needs a build, or null when it is complete and newer than every source. */
export function staleReason() {
  if (!existsSync(STAMP)) return existsSync(OUT_DIR) ? 'the last build did not finish' : 'there is no build yet';
  const built = statSync(STAMP).mtimeMs;
  if (newest(path.join(ROOT, 'src')) > built) return 'src/ changed since the last build';
  if (CONFIG_FILES.some((f) => statSync(path.join(ROOT, f)).mtimeMs > built)) return 'the TypeScript configuration changed';
  return null;
}

function step(args) {
  const result = spawnSync(process.execPath, args, { cwd: ROOT, stdio: 'inherit' });
  if (result.status !== 0) {
    process.stderr.write(`build failed: node ${args.join(' ')} (${result.status ?? result.signal})\n`);
    process.exit(result.status ?? 1);
  }
}

export function build() {
  rmSync(OUT_DIR, { recursive: true, force: true });
  step([createRequire(import.meta.url).resolve('typescript/bin/tsc'), '-p', 'tsconfig.build.json']);
  step(['scripts/copy-assets.mjs', OUT_DIR]);
  writeFileSync(STAMP, '');
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) build();
