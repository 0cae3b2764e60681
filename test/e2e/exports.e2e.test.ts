/**
 * The published surface, as a consumer gets it (SPEC §18, STYLE 10 and 12): the client entry
 * point's declarations and JavaScript reach nothing but themselves, typebox and node:
 * builtins; the library's declarations reach no database, Redis or NATS driver and only
 * runtime dependencies; the packed tarball holds only what a user needs, installs into an
 * empty project that compiles a strict consumer of both entry points (skipLibCheck off, so
 * every declaration we ship and every one it pulls in is checked) with no type of a driver in
 * its program, and runs the CLI and both entry points from there; the client alone compiles
 * and runs with nothing but typebox beside it; `agent-sessions/openai-agents` loads nothing
 * at run time, so it imports without its optional peer; and a git URL installs (prepare
 * builds it).
 */
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import semver from 'semver';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { builtPackage, ROOT, type BuiltPackage } from '../setup/built-package.js';
import { isRelative, packageName, walkGraph, type GraphEdge } from '../setup/module-graph.js';

interface Manifest {
  name: string;
  files?: string[];
  exports: Record<string, { types: string; import: string }>;
  dependencies?: Record<string, string>;
  engines?: { node?: string };
  devDependencies?: Record<string, string>;
}

const manifest = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as Manifest & { version: string };
/** Database, cache and messaging drivers: the library API must not expose any of their types. */
const DRIVER = /^(pg|pg-[\w-]+|@types\/pg|postgres|@electric-sql\/[\w.-]+|redis|@redis\/[\w.-]+|ioredis|nats|@nats-io\/[\w.-]+)$/;
const CLIENT_PACKAGES = ['typebox'];
/** The optional peer that `agent-sessions/opentelemetry` alone loads. */
const OTEL_API = '@opentelemetry/api';
/** The optional peer whose types `agent-sessions/openai-agents` names (it loads nothing of it). */
const OPENAI_AGENTS = '@openai/agents';
/** The optional peer whose types `agent-sessions/ai-sdk` alone names. */
const AI = 'ai';

function installedVersion(name: string): string {
  return (JSON.parse(readFileSync(path.join(ROOT, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
}

/**
 * npm, run outside any npm script: `npm test` exports npm_config_local_prefix (our checkout)
 * and npm_package_* to its children, which would make a nested npm act on this repository.
 */
function npm(args: string[], cwd: string): SpawnSyncReturns<string> {
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !/^npm_(config_local_prefix|package_|lifecycle_|command$)/i.test(k)),
  );
  const result = spawnSync('npm', args, { cwd, env, encoding: 'utf8', timeout: 240_000 });
  if (result.status !== 0) throw new Error(`npm ${args.join(' ')} failed:\n${result.stdout}\n${result.stderr}`);
  return result;
}

/** Runs a command that must succeed; returns its stdout. */
function run(command: string, args: string[], cwd: string, timeout = 60_000): string {
  const result = spawnSync(command, args, { cwd, encoding: 'utf8', timeout, env: { PATH: process.env.PATH, HOME: process.env.HOME } });
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} failed (${result.status ?? result.signal}):\n${result.stdout}\n${result.stderr}`);
  return result.stdout;
}

/** Runs the installed CLI and imports both entry points in `project` (a consumer's directory). */
function runInstalled(project: string): void {
  expect(run(path.join(project, 'node_modules/.bin/agent-sessions'), ['--version'], project).trim()).toBe(manifest.version);
  const out = run(process.execPath, ['--input-type=module', '-e', USE_BOTH], project);
  expect(JSON.parse(out)).toEqual({ status: 'idle', fetched: 'http://127.0.0.1:9/v1/sessions/s1' });
}

/** The library in memory and the client over a stub fetch, from the consumer's node_modules. */
const USE_BOTH = `
import { createSessions } from 'agent-sessions';
import { AgentSessionsClient } from 'agent-sessions/client';
const sessions = await createSessions({ dataDir: ':memory:', env: {} });
const { status } = await sessions.create({ title: 'installed' });
await sessions.close();
let fetched = null;
const api = new AgentSessionsClient({
  baseUrl: 'http://127.0.0.1:9',
  fetch: async (url) => { fetched = String(url); return new Response('{}', { status: 404, headers: { 'content-type': 'application/json' } }); },
});
await api.get('s1').catch(() => undefined);
console.log(JSON.stringify({ status, fetched }));
`;

/** Compiles a project (or, with `--listFilesOnly`, only resolves it) and returns its files. */
function tsc(cwd: string, project: string, list: '--listFiles' | '--listFilesOnly' = '--listFiles'): string[] {
  const started = Date.now();
  const result = spawnSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', project, list], {
    cwd,
    encoding: 'utf8',
    timeout: 240_000,
  });
  const lines = result.stdout.split('\n').filter(Boolean);
  const listed = lines.filter((l) => path.isAbsolute(l));
  // tsc prints its diagnostics and the program's files on stdout alike.
  expect(lines.filter((l) => !path.isAbsolute(l)).join('\n'), `tsc -p ${project}`).toBe('');
  expect(result.status, `tsc -p ${project}: ${result.stderr}`).toBe(0);
  console.log(`tsc -p ${project} ${list}: ${Date.now() - started} ms, ${listed.length} files`);
  return listed;
}

/** The packages a program's files come from (`@types/node`, `typebox`, `agent-sessions`, ...). */
/**
 * Every installed package whose `engines.node` leaves out a Node version our own `engines`
 * accepts (npm's EBADENGINE on that Node): `name@version needs <range>`.
 */
function enginesNarrowerThan(minimum: string, nodeModules: string): string[] {
  const found: string[] = [];
  const visit = (dir: string): void => {
    if (!existsSync(dir)) return;
    for (const name of readdirSync(dir)) {
      if (name.startsWith('.')) continue;
      if (name.startsWith('@')) {
        visit(path.join(dir, name));
        continue;
      }
      const manifestFile = path.join(dir, name, 'package.json');
      if (existsSync(manifestFile)) {
        const m = JSON.parse(readFileSync(manifestFile, 'utf8')) as { name?: string; version?: string; engines?: { node?: string } };
        const range = m.engines?.node;
        if (range && !semver.satisfies(minimum, range)) found.push(`${m.name}@${m.version} needs ${range}`);
      }
      visit(path.join(dir, name, 'node_modules'));
    }
  };
  visit(nodeModules);
  return found;
}

function packagesOf(files: readonly string[]): Set<string> {
  const names = new Set<string>();
  for (const file of files) {
    const match = /node_modules\/((?:@[^/]+\/)?[^/]+)\/(?!.*node_modules\/)/.exec(file.split(path.sep).join('/'));
    if (match?.[1]) names.add(match[1]);
  }
  return names;
}

const describeEdge = (dist: string, e: GraphEdge) =>
  `${path.relative(dist, e.from)}:${e.reference.line} ${e.reference.specifier}${e.to === null && isRelative(e.reference.specifier) ? ' (no such file)' : ''}`;

const CONSUMER = `
import {
  createSessions,
  isAgentSessionsError,
  NotFoundError,
  SESSION_STATUSES,
  Sessions,
  type CreateSessionsOptions,
  type Session,
  type SessionStatus,
} from 'agent-sessions';
import {
  AgentSessionsClient,
  AgentSessionsHttpError,
  isAgentSessionsHttpError,
  type AgentSessionsClientOptions,
  type SessionJson,
} from 'agent-sessions/client';

/** Fails to compile when T is any: a type that resolved to nothing would pass every other check. */
type NotAny<T> = 0 extends 1 & T ? never : T;
const check = <T>(value: NotAny<T>): T => value;

export async function library(dataDir: string): Promise<string> {
  const options: CreateSessionsOptions = { dataDir, migrate: true };
  const sessions: Sessions = await createSessions(options);
  try {
    const session: Session = check<Session>(await sessions.create({ title: 'typed' }));
    const status: SessionStatus = session.status;
    const known: readonly string[] = SESSION_STATUSES;
    const version: number = session.version;
    // @ts-expect-error the library model is camelCase; snake_case is the wire's
    void session.created_at;
    await sessions.get('missing').catch((err: unknown) => {
      if (err instanceof NotFoundError && isAgentSessionsError(err)) return err.code;
      throw err;
    });
    return \`\${status} \${known.length} \${version} \${session.createdAt}\`;
  } finally {
    await sessions.close();
  }
}

export async function client(baseUrl: string): Promise<SessionJson | null> {
  const options: AgentSessionsClientOptions = { baseUrl, apiKey: 'key', timeoutMs: 1_000 };
  const api = check<AgentSessionsClient>(new AgentSessionsClient(options));
  try {
    const created: SessionJson = check<SessionJson>(await api.create({ title: 'typed' }));
    const createdAt: string = created.created_at;
    // @ts-expect-error the wire is snake_case
    void created.createdAt;
    await api.items.append(created.id, [{ role: 'user', content: createdAt }], { expectedRevision: created.revision });
    return await api.get(created.id);
  } catch (err) {
    if (err instanceof AgentSessionsHttpError && isAgentSessionsHttpError(err)) {
      const status: number = err.status;
      const retry: boolean = err.retryable;
      console.log(status, retry, err.code);
      return null;
    }
    throw err;
  }
}
`;

const CLIENT_ONLY = `
import { AgentSessionsClient, AgentSessionsHttpError, type SessionJson } from 'agent-sessions/client';

export async function read(id: string): Promise<SessionJson | AgentSessionsHttpError> {
  const api = new AgentSessionsClient({ baseUrl: 'http://127.0.0.1:8080' });
  return api.get(id).catch((err: unknown) => {
    if (err instanceof AgentSessionsHttpError) return err;
    throw err;
  });
}
`;

const TSCONFIG = {
  compilerOptions: {
    strict: true,
    skipLibCheck: false,
    module: 'NodeNext',
    moduleResolution: 'NodeNext',
    target: 'ES2022',
    lib: ['ES2023'],
    types: ['node'],
    noEmit: true,
  },
};

describe('e2e/exports', { timeout: 300_000 }, () => {
  let pkg: BuiltPackage;
  let dist: string;
  /** The packed tarball, once the pack test made it. */
  let tarballPath: string | null = null;
  const scratch = mkdtempSync(path.join(os.tmpdir(), 'as-consumer-'));

  beforeAll(async () => {
    pkg = await builtPackage();
    dist = path.join(pkg.dir, 'dist');
    console.log(`package build: ${pkg.buildMs} ms${pkg.builtHere ? '' : ' (made by another file)'}`);
  }, 300_000);

  const cleanup: string[] = [scratch];
  afterAll(() => {
    for (const dir of cleanup) rmSync(dir, { recursive: true, force: true });
  });

  const entry = (subpath: string, kind: 'types' | 'import') => {
    const target = manifest.exports[subpath]?.[kind];
    if (!target) throw new Error(`package.json exports has no ${subpath} ${kind}`);
    return path.join(pkg.dir, target);
  };

  /** References that leave dist/ or name a package outside `allowed` (node: builtins always pass). */
  const strays = (edges: readonly GraphEdge[], allowed: (pkg: string) => boolean) =>
    edges
      .filter((e) =>
        e.to === null
          ? isRelative(e.reference.specifier) || (!e.reference.specifier.startsWith('node:') && !allowed(packageName(e.reference.specifier)))
          : !e.to.startsWith(dist + path.sep),
      )
      .map((e) => describeEdge(dist, e));

  it('the client declarations reach only themselves, typebox and node: builtins', () => {
    const graph = walkGraph([entry('./client', 'types')], 'declaration');
    expect(graph.files.size).toBeGreaterThan(1);
    expect(strays(graph.edges, (p) => CLIENT_PACKAGES.includes(p))).toEqual([]);
  });

  it('the client JavaScript loads only itself, typebox and node: builtins', () => {
    const graph = walkGraph([entry('./client', 'import')], 'javascript', { typeOnly: false });
    expect(graph.files.size).toBeGreaterThan(1);
    expect(strays(graph.edges, (p) => CLIENT_PACKAGES.includes(p))).toEqual([]);
  });

  it('the opentelemetry entry reaches only itself (core types included) and @opentelemetry/api, in types and JavaScript', () => {
    for (const [kind, graph] of [
      ['declaration', walkGraph([entry('./opentelemetry', 'types')], 'declaration')],
      ['javascript', walkGraph([entry('./opentelemetry', 'import')], 'javascript', { typeOnly: false })],
    ] as const) {
      expect(graph.files.size, kind).toBeGreaterThan(1);
      expect(strays(graph.edges, (p) => p === OTEL_API), kind).toEqual([]);
    }
  });

  it('the openai-agents entry loads nothing at run time, not even @openai/agents; its declarations reach only the package and @openai/agents', () => {
    const js = walkGraph([entry('./openai-agents', 'import')], 'javascript', { typeOnly: false });
    expect(js.edges.filter((e) => !e.reference.typeOnly).map((e) => describeEdge(dist, e))).toEqual([]);
    const types = walkGraph([entry('./openai-agents', 'types')], 'declaration');
    expect(types.files.size).toBeGreaterThan(1);
    const runtime = Object.keys(manifest.dependencies ?? {});
    expect(strays(types.edges, (p) => p === OPENAI_AGENTS || (runtime.includes(p) && !DRIVER.test(p)))).toEqual([]);
  });

  it('the ai-sdk entry names `ai` in its declarations only: its JavaScript loads no package', () => {
    const runtime = Object.keys(manifest.dependencies ?? {});
    const types = walkGraph([entry('./ai-sdk', 'types')], 'declaration');
    expect(types.edges.some((e) => e.to === null && packageName(e.reference.specifier) === AI)).toBe(true);
    expect(strays(types.edges, (p) => p === AI || (runtime.includes(p) && !DRIVER.test(p)))).toEqual([]);
    const js = walkGraph([entry('./ai-sdk', 'import')], 'javascript', { typeOnly: false });
    expect(strays(js.edges, () => false)).toEqual([]);
  });

  it('the library JavaScript never imports @opentelemetry/api itself (only the opentelemetry entry does)', () => {
    const graph = walkGraph([entry('.', 'import')], 'javascript', { typeOnly: false });
    expect(graph.edges.filter((e) => e.to === null && packageName(e.reference.specifier) === OTEL_API).map((e) => describeEdge(dist, e))).toEqual([]);
  });

  it('the library declarations reach no driver, and only runtime dependencies', () => {
    const graph = walkGraph([entry('.', 'types')], 'declaration');
    const runtime = Object.keys(manifest.dependencies ?? {});
    expect(strays(graph.edges, (p) => runtime.includes(p) && !DRIVER.test(p))).toEqual([]);
  });

  it('exports no internal entry point', () => {
    const targets = Object.values(manifest.exports).flatMap((e) => Object.values(e));
    expect(targets.filter((t) => /(^|\/)internal\.(d\.ts|js)$/.test(t))).toEqual([]);
  });

  it('lists no driver types among the runtime dependencies', () => {
    expect(Object.keys(manifest.dependencies ?? {})).not.toContain('@types/pg');
    expect(Object.keys(manifest.dependencies ?? {}).filter((d) => d.startsWith('@types/'))).toEqual([]);
  });

  it('packs, installs into an empty project and compiles a strict consumer of both entry points', () => {
    const timings: string[] = [];
    let t = Date.now();
    const packed = JSON.parse(npm(['pack', '--json', '--ignore-scripts', '--pack-destination', scratch], pkg.dir).stdout) as {
      filename: string;
      files: { path: string }[];
    }[];
    const tarball = packed[0];
    if (!tarball) throw new Error('npm pack reported no tarball');
    timings.push(`pack ${Date.now() - t} ms`);
    const paths = tarball.files.map((f) => f.path);
    // Every entry of "files" brings something (a "!" entry takes away).
    for (const listed of (manifest.files ?? []).filter((f) => !f.startsWith('!'))) {
      const prefix = listed.replace(/^\.\//, '').replace(/\/$/, '');
      expect(paths.some((p) => p === prefix || p.startsWith(`${prefix}/`)), `"files" entry ${listed} packs nothing`).toBe(true);
    }
    for (const subpath of Object.keys(manifest.exports)) {
      for (const kind of ['types', 'import'] as const) expect(paths).toContain(path.relative(pkg.dir, entry(subpath, kind)));
    }
    // Only what a user needs: no maps (they point at sources that are not shipped), no build
    // stamp, no internal entry point, nothing of the tests.
    expect(paths).toEqual(expect.arrayContaining(['LICENSE', 'README.md', 'package.json', 'dist/cli/index.js']));
    expect(paths.filter((p) => !/^dist\/.+\.(js|d\.ts|sql|lua|html|css)$/.test(p) && !['LICENSE', 'README.md', 'package.json'].includes(p))).toEqual([]);
    expect(paths.filter((p) => /\.map$|\.build-stamp|^dist\/internal\.|(^|\/)tests?\/|\.test\./.test(p))).toEqual([]);
    tarballPath = path.join(scratch, tarball.filename);

    writeFileSync(path.join(scratch, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
    writeFileSync(path.join(scratch, 'consumer.ts'), CONSUMER);
    writeFileSync(path.join(scratch, 'client-only.ts'), CLIENT_ONLY);
    writeFileSync(path.join(scratch, 'tsconfig.json'), JSON.stringify({ ...TSCONFIG, files: ['consumer.ts'] }));
    writeFileSync(path.join(scratch, 'tsconfig.client.json'), JSON.stringify({ ...TSCONFIG, files: ['client-only.ts'] }));
    t = Date.now();
    const typesNode = `@types/node@${installedVersion('@types/node').split('.')[0]}`;
    npm(
      ['install', '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts', `typescript@${installedVersion('typescript')}`, typesNode, `./${tarball.filename}`],
      scratch,
    );
    timings.push(`install ${Date.now() - t} ms`);
    // `engines` tells the truth: whatever npm resolves for a user installs on the oldest Node
    // we accept without EBADENGINE (fastify's light-my-request and the NATS client are pinned
    // for it), whichever Node runs this test.
    const minimum = semver.minVersion(manifest.engines?.node ?? '')?.version;
    expect(minimum).toBeDefined();
    expect(enginesNarrowerThan(minimum!, path.join(scratch, 'node_modules'))).toEqual([]);

    const everything = packagesOf(tsc(scratch, 'tsconfig.json'));
    expect(everything).toContain(manifest.name);
    expect([...everything].filter((p) => DRIVER.test(p))).toEqual([]);

    // The client alone pulls in nothing of the server's: its program is the client, typebox and
    // Node's types. Resolving it is enough: the compile above checked those declarations.
    const clientOnly = packagesOf(tsc(scratch, 'tsconfig.client.json', '--listFilesOnly'));
    expect(clientOnly).toContain(manifest.name);
    // typescript: its lib files; undici-types: @types/node's fetch types.
    const allowed = [manifest.name, ...CLIENT_PACKAGES, 'typescript', '@types/node', 'undici-types'];
    expect([...clientOnly].filter((p) => !allowed.includes(p))).toEqual([]);

    t = Date.now();
    runInstalled(scratch);
    timings.push(`run ${Date.now() - t} ms`);

    // The subpath loads from the tarball (npm brings @opentelemetry/api along: prom-client depends on it).
    const otel = `import { openTelemetryTracing } from 'agent-sessions/opentelemetry'; console.log(openTelemetryTracing().enabled);`;
    expect(run(process.execPath, ['--input-type=module', '-e', otel], scratch).trim()).toBe('true');
    // So does agent-sessions/openai-agents, with its optional peer absent (npm installs none).
    expect(existsSync(path.join(scratch, 'node_modules', OPENAI_AGENTS))).toBe(false);
    const openaiAgents = `import { AgentSessionsSession } from 'agent-sessions/openai-agents'; console.log(typeof AgentSessionsSession);`;
    expect(run(process.execPath, ['--input-type=module', '-e', openaiAgents], scratch).trim()).toBe('function');
    // The ai-sdk subpath loads and answers without `ai` installed (it names it for types only).
    const aiSdk = `import { createSessions } from 'agent-sessions'; import { createChatStore } from 'agent-sessions/ai-sdk';
      const sessions = await createSessions({ dataDir: ':memory:', env: {} });
      const chat = createChatStore({ sessions });
      console.log((await chat.resumeStream('c1')).status, JSON.stringify(await chat.loadMessages('c1')));
      await sessions.close();`;
    expect(existsSync(path.join(scratch, 'node_modules', AI))).toBe(false);
    expect(run(process.execPath, ['--input-type=module', '-e', aiSdk], scratch).trim()).toBe('204 []');
    console.log(timings.join(', '));
  });

  it('the client compiles and runs with only typebox installed beside it (no server dependency)', () => {
    if (!tarballPath) throw new Error('the pack test did not run');
    // Outside the scratch project: Node and tsc look for packages in every parent directory.
    const project = mkdtempSync(path.join(os.tmpdir(), 'as-client-alone-'));
    cleanup.push(project);
    const modules = path.join(project, 'node_modules');
    mkdirSync(path.join(modules, manifest.name), { recursive: true });
    run('tar', ['-xzf', tarballPath, '--strip-components=1', '-C', path.join(modules, manifest.name)], project);
    mkdirSync(path.join(modules, '@types'), { recursive: true });
    for (const dep of [...CLIENT_PACKAGES, '@types/node', 'undici-types']) {
      symlinkSync(path.join(ROOT, 'node_modules', dep), path.join(modules, dep), 'dir');
    }
    writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'client-alone', private: true, type: 'module' }));
    writeFileSync(path.join(project, 'client-only.ts'), CLIENT_ONLY);
    writeFileSync(path.join(project, 'tsconfig.json'), JSON.stringify({ ...TSCONFIG, files: ['client-only.ts'] }));
    const compiled = spawnSync(process.execPath, [path.join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'], {
      cwd: project,
      encoding: 'utf8',
    });
    expect(compiled.stdout + compiled.stderr, 'tsc of the client alone').toBe('');
    expect(compiled.status).toBe(0);

    const script = `
      import { AgentSessionsClient, AgentSessionsHttpError } from 'agent-sessions/client';
      const api = new AgentSessionsClient({ baseUrl: 'http://127.0.0.1:9', fetch: async () => new Response('{"code":"session_not_found"}', { status: 404, headers: { 'content-type': 'application/problem+json' } }) });
      const err = await api.get('s1').catch((e) => e);
      const server = await import('agent-sessions').then(() => 'loaded', (e) => e.code);
      console.log(JSON.stringify({ http: err instanceof AgentSessionsHttpError, status: err.status, server }));`;
    const out = JSON.parse(run(process.execPath, ['--input-type=module', '-e', script], project)) as Record<string, unknown>;
    // The library itself cannot load here: its drivers are absent, which is the point.
    expect(out).toEqual({ http: true, status: 404, server: 'ERR_MODULE_NOT_FOUND' });

    // Nor is @opentelemetry/api here (a layout where nothing brought it): what `serve` with
    // OTEL_TRACING=true says then, from the built loader and adapter.
    const loader = pathToFileURL(path.join(modules, manifest.name, 'dist/cli/tracing.js')).href;
    const tracing = `
      const { loadTracing } = await import(${JSON.stringify(loader)});
      const err = await loadTracing().then(() => null, (e) => e);
      console.log(JSON.stringify({ name: err?.name, message: err?.message }));`;
    const refused = JSON.parse(run(process.execPath, ['--input-type=module', '-e', tracing], project)) as { name: string; message: string };
    expect(refused.name).toBe('TracingUnavailableError');
    expect(refused.message).toMatch(/^OTEL_TRACING=true needs the package @opentelemetry\/api[^\n]*$/);
  });

  /**
   * A git URL: npm clones, installs the dev dependencies, runs prepare (the build) and packs.
   * The repository is a snapshot of this checkout's HEAD (committed files only).
   */
  it.skipIf(!existsSync(path.join(ROOT, '.git')))('installs from a git URL: prepare builds it, the CLI and both entry points run', () => {
    const repo = path.join(scratch, 'repo');
    const project = path.join(scratch, 'from-git');
    mkdirSync(repo);
    mkdirSync(project);
    const archive = spawnSync('git', ['-C', ROOT, 'archive', '--format=tar', 'HEAD'], { maxBuffer: 256 * 1024 * 1024 });
    expect(archive.status, String(archive.stderr)).toBe(0);
    const untar = spawnSync('tar', ['-x', '-C', repo], { input: archive.stdout });
    expect(untar.status, String(untar.stderr)).toBe(0);
    run('git', ['init', '-q'], repo);
    run('git', ['add', '-A'], repo);
    run('git', ['-c', 'user.email=test@example.invalid', '-c', 'user.name=test', 'commit', '-qm', 'snapshot'], repo);
    writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'from-git', private: true, type: 'module' }));
    const started = Date.now();
    npm(['install', '--prefer-offline', '--no-audit', '--no-fund', `git+file://${repo}`], project);
    console.log(`install from git URL (prepare = build): ${Date.now() - started} ms`);
    const installed = path.join(project, 'node_modules', manifest.name);
    expect(existsSync(path.join(installed, 'LICENSE'))).toBe(true);
    expect(existsSync(path.join(installed, 'dist/client/index.d.ts'))).toBe(true);
    runInstalled(project);
  });
});
