/**
 * A consumer's project in a temporary directory: npm run the way a user runs it, and the
 * versions of our own dev dependencies (so an install from the npm cache gets the packages the
 * rest of the suite tested).
 */
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT } from './built-package.js';

/**
 * npm, run outside any npm script: `npm test` exports npm_config_local_prefix (our checkout)
 * and npm_package_* to its children, which would make a nested npm act on this repository.
 */
export function npm(args: string[], cwd: string, timeoutMs = 240_000): SpawnSyncReturns<string> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_(config_local_prefix|package_|lifecycle_|command$)/i.test(k)));
  const result = spawnSync('npm', args, { cwd, env, encoding: 'utf8', timeout: timeoutMs });
  if (result.status !== 0) throw new Error(`npm ${args.join(' ')} failed (${result.status ?? result.signal}):\n${result.stdout}\n${result.stderr}`);
  return result;
}

/** The version of a package installed in our node_modules. */
export function installedVersion(name: string): string {
  return (JSON.parse(readFileSync(path.join(ROOT, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
}
