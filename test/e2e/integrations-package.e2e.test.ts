/**
 * The integration examples as a user meets them (issue 11): a scratch project installs the
 * packed tarball with the frameworks from the registry (`@openai/agents`, `ai`, `zod`, and any
 * other dev dependency an example imports, at the versions the suite tests; npm's cache makes
 * it quick), and every examples/integrations/*.ts is compiled by tsc (strict, NodeNext) against
 * the installed package and run by node, which must exit 0.
 *
 * An example that needs a newer Node than the package's minimum says so in its first line:
 *
 *   // node >= 22
 *
 * On an older Node it is compiled but not run; its run is skipped by name (and listed with
 * the run's other skips). The repository's own type-check leaves examples/integrations out
 * (tsconfig.json): they import the package by name, which only an installed package resolves.
 */
import { spawnSync } from 'node:child_process';
import { appendFileSync, copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import semver from 'semver';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import '../setup/context.js';
import { builtPackage, ROOT } from '../setup/built-package.js';
import { installedVersion, npm } from '../setup/scratch-project.js';

const EXAMPLES = path.join(ROOT, 'examples/integrations');
/** What every scratch project gets beside the package: the frameworks the adapters are for. */
const FRAMEWORKS = ['@openai/agents', 'ai', 'zod'];
const MIN_NODE = /^\/\/\s*node\s*>=\s*(\d+(?:\.\d+){0,2})\s*$/;

const manifest = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
  name: string;
  devDependencies?: Record<string, string>;
};

interface Example {
  file: string;
  source: string;
  /** The Node version its first line asks for, if any. */
  minimumNode: string | null;
}

const examples: Example[] = readdirSync(EXAMPLES)
  .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))
  .sort()
  .map((file) => {
    const source = readFileSync(path.join(EXAMPLES, file), 'utf8');
    const declared = MIN_NODE.exec(source.split('\n', 1)[0] ?? '')?.[1];
    return { file, source, minimumNode: declared ? semver.coerce(declared)!.version : null };
  });

/** The packages an example imports by name (not ours, not Node's). */
function importedPackages(source: string): string[] {
  const names = new Set<string>();
  for (const [, specifier] of source.matchAll(/(?:from|import)\s*\(?\s*['"]([^'"./][^'"]*)['"]/g)) {
    if (!specifier || specifier.startsWith('node:')) continue;
    const parts = specifier.split('/');
    names.add(specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!);
  }
  names.delete(manifest.name);
  return [...names];
}

const TSCONFIG = {
  compilerOptions: {
    strict: true,
    module: 'NodeNext',
    moduleResolution: 'NodeNext',
    target: 'ES2022',
    lib: ['ES2023'],
    types: ['node'],
    // As most projects compile; the exports test checks our declarations with it off, and
    // checking every framework's declarations would multiply this test's time.
    skipLibCheck: true,
    rootDir: 'examples',
    outDir: 'build',
  },
  include: ['examples/*.ts'],
};

describe('e2e/integrations-package', { timeout: 120_000 }, () => {
  const scratch = mkdtempSync(path.join(os.tmpdir(), 'as-integrations-'));
  /** tsc's diagnostics by example file; `''` holds those of no example (the project's). */
  const diagnostics = new Map<string, string[]>();

  beforeAll(async () => {
    const timings: string[] = [];
    const pkg = await builtPackage();
    timings.push(`package build ${pkg.buildMs} ms${pkg.builtHere ? '' : ' (made by another file)'}`);

    let t = Date.now();
    const packed = JSON.parse(npm(['pack', '--json', '--ignore-scripts', '--pack-destination', scratch], pkg.dir).stdout) as { filename: string }[];
    const tarball = packed[0]?.filename;
    if (!tarball) throw new Error('npm pack reported no tarball');
    timings.push(`pack ${Date.now() - t} ms`);

    writeFileSync(path.join(scratch, 'package.json'), JSON.stringify({ name: 'integrations-scratch', private: true, type: 'module' }));
    writeFileSync(path.join(scratch, 'tsconfig.json'), JSON.stringify(TSCONFIG));
    mkdirSync(path.join(scratch, 'examples'));
    for (const { file } of examples) copyFileSync(path.join(EXAMPLES, file), path.join(scratch, 'examples', file));

    const dev = manifest.devDependencies ?? {};
    const wanted = new Set([...FRAMEWORKS, ...examples.flatMap((e) => importedPackages(e.source)).filter((p) => p in dev)]);
    const specs = [...wanted].sort().map((p) => `${p}@${installedVersion(p)}`);
    t = Date.now();
    npm(
      [
        'install',
        '--prefer-offline',
        '--no-audit',
        '--no-fund',
        '--ignore-scripts',
        `./${tarball}`,
        ...specs,
        `typescript@${installedVersion('typescript')}`,
        `@types/node@${installedVersion('@types/node').split('.')[0]}`,
      ],
      scratch,
    );
    timings.push(`install ${specs.join(' ')}: ${Date.now() - t} ms`);

    t = Date.now();
    const tsc = spawnSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.json', '--pretty', 'false'], {
      cwd: scratch,
      encoding: 'utf8',
      timeout: 240_000,
    });
    if (tsc.error) throw tsc.error;
    // One diagnostic per line, its continuation lines indented; tsc emits whatever it could.
    let current = '';
    for (const row of `${tsc.stdout}${tsc.stderr}`.split('\n').filter(Boolean)) {
      const located = /^examples\/([^(]+)\(\d+,\d+\): /.exec(row);
      if (located) current = located[1]!;
      else if (!/^\s/.test(row)) current = '';
      diagnostics.set(current, [...(diagnostics.get(current) ?? []), row]);
    }
    timings.push(`tsc ${Date.now() - t} ms`);
    console.log(`e2e/integrations-package: ${examples.map((e) => e.file).join(', ')}\n  ${timings.join('\n  ')}`);
  }, 300_000);

  afterAll(() => {
    rmSync(scratch, { recursive: true, force: true });
  });

  it('finds the examples', () => {
    expect(examples.map((e) => e.file)).toContain('library.ts');
  });

  for (const example of examples) {
    const runnable = example.minimumNode === null || semver.gte(process.versions.node, example.minimumNode);

    it(`${example.file} compiles against the installed package`, () => {
      expect([...(diagnostics.get('') ?? []), ...(diagnostics.get(example.file) ?? [])]).toEqual([]);
    });

    if (!runnable) {
      const line = `SKIPPED (node ${process.versions.node}, needs >= ${example.minimumNode}): e2e/integrations-package runs examples/integrations/${example.file}`;
      appendFileSync(inject('skipLog'), `${line}\n`);
      console.warn(line);
    }

    it.skipIf(!runnable)(`${example.file} runs on node ${process.versions.node}${example.minimumNode ? ` (needs >= ${example.minimumNode})` : ''}`, () => {
      const started = Date.now();
      // Only what a shell would have: no DATABASE_URL or REDIS_URL of this test run.
      const run = spawnSync(process.execPath, [path.join('build', example.file.replace(/\.ts$/, '.js'))], {
        cwd: scratch,
        encoding: 'utf8',
        timeout: 90_000,
        env: { PATH: process.env.PATH, HOME: process.env.HOME },
      });
      console.log(`${example.file} (${Date.now() - started} ms):\n${run.stdout}${run.stderr}`);
      expect(run.error).toBeUndefined();
      expect({ status: run.status, signal: run.signal, stderr: run.stderr }).toMatchObject({ status: 0, signal: null });
    });
  }
});
