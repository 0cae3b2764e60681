/**
 * The package as it would be published, built once per test run into a temporary directory
 * (never into dist/, which a developer's `npm run build` owns): the package.json, the files
 * it lists, and dist/ from `tsc -p tsconfig.build.json` plus scripts/copy-assets.mjs, the
 * two steps of `npm run build`. Its node_modules links to ours, so the built CLI runs from
 * there and `import('agent-sessions')` resolves to it by name.
 *
 * The first test file to ask builds it; others wait for that build (vitest runs two files
 * at a time), so the files that need it share one build and never see a half-written one.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { inject } from 'vitest';
import './built-package-context.js';
import { within } from './harness.js';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** The build's output directory, where package.json's entry points point. */
const OUT_DIR = 'dist';
/** What npm packs whether or not `files` names it. */
const ALWAYS_PACKED = /^(readme|license|licence|changelog|notice)(\..*)?$/i;
const BUILD_TIMEOUT_MS = 300_000;

export interface BuiltPackage {
  /** The package root: package.json, dist/, the listed files, node_modules (ours). */
  dir: string;
  /** How long the shared build took, whichever file made it. */
  buildMs: number;
  /** Whether this file made the build (false: it waited for another's). */
  builtHere: boolean;
}

type Outcome = { ok: true; buildMs: number } | { ok: false; error: string };

function run(command: string, args: string[]): void {
  const result = spawnSync(command, args, { cwd: ROOT, encoding: 'utf8', timeout: BUILD_TIMEOUT_MS });
  if (result.status !== 0) {
    throw new Error(`${[command, ...args].join(' ')} failed (${result.status ?? result.signal ?? String(result.error)}):\n${result.stdout}${result.stderr}`);
  }
}

function build(dir: string): void {
  mkdirSync(dir);
  const manifest = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { files?: string[] };
  cpSync(path.join(ROOT, 'package.json'), path.join(dir, 'package.json'));
  const listed = (manifest.files ?? []).filter((f) => f.replace(/^\.\//, '').replace(/\/$/, '') !== OUT_DIR);
  const always = readdirSync(ROOT).filter((f) => ALWAYS_PACKED.test(f));
  for (const entry of new Set([...listed, ...always])) {
    if (existsSync(path.join(ROOT, entry))) cpSync(path.join(ROOT, entry), path.join(dir, entry), { recursive: true });
  }
  const out = path.join(dir, OUT_DIR);
  run(process.execPath, [path.join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json', '--outDir', out]);
  run(process.execPath, ['scripts/copy-assets.mjs', out]);
  symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'), 'dir');
}

export async function builtPackage(): Promise<BuiltPackage> {
  const base = inject('packageBuildDir');
  if (!base) throw new Error('no packageBuildDir: run through vitest.config.ts, whose global setup provides it');
  const dir = path.join(base, 'package');
  const outcomeFile = path.join(base, 'outcome.json');
  let builtHere = false;
  try {
    // mkdir is atomic: exactly one file wins the right to build.
    mkdirSync(path.join(base, 'lock'));
    builtHere = true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  if (builtHere) {
    const started = Date.now();
    let outcome: Outcome;
    try {
      build(dir);
      outcome = { ok: true, buildMs: Date.now() - started };
    } catch (err) {
      outcome = { ok: false, error: err instanceof Error ? err.message : String(err) };
    }
    // Written whole and renamed, so a waiting file never reads half of it.
    writeFileSync(`${outcomeFile}.tmp`, JSON.stringify(outcome));
    renameSync(`${outcomeFile}.tmp`, outcomeFile);
  } else {
    await within(BUILD_TIMEOUT_MS, async () => existsSync(outcomeFile), 100);
  }
  const outcome = JSON.parse(readFileSync(outcomeFile, 'utf8')) as Outcome;
  if (!outcome.ok) throw new Error(`building the package failed:\n${outcome.error}`);
  return { dir, buildMs: outcome.buildMs, builtHere };
}
