/**
 * The deployment files, checked without a Docker engine: deploy/compose.yaml sets only real
 * configuration keys (CONFIG_VARIABLES, what loadConfig reads) with values loadConfig
 * accepts; the Dockerfile starts the CLI's `serve` through package.json's bin, checks /ready
 * and runs as a non-root user; deploy/haproxy.cfg (the file test/e2e/haproxy.e2e.test.ts
 * runs, with the same variables) passes `haproxy -c`.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { CONFIG_VARIABLES, loadConfig } from '../../src/internal.js';
import { requireBinaries } from '../setup/harness.js';
import { HAPROXY_CONFIG, haproxyBinary, haproxyEnv } from '../setup/haproxy.js';
import { runCli } from '../setup/server-process.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const read = (file: string) => readFileSync(path.join(ROOT, file), 'utf8');

type Yaml = unknown;

function asMap(v: Yaml | undefined, what: string): { [key: string]: Yaml } {
  if (v === null || v === undefined || typeof v !== 'object' || Array.isArray(v)) throw new Error(`${what} is not a map`);
  return v as { [key: string]: Yaml };
}

/** Compose's `${VAR}`, `${VAR:-default}` and `${VAR:?message}`, filled from `values`. */
function interpolate(text: string, values: Record<string, string>): string {
  return text.replace(/\$\{(\w+)(?::?[-?]([^}]*))?\}/g, (_, name: string) => {
    const v = values[name];
    if (v === undefined) throw new Error(`no sample value for \${${name}}`);
    return v;
  });
}

// ---------------------------------------------------------------------------------------------

const compose = asMap(parseYaml(read('deploy/compose.yaml')), 'compose.yaml');
const services = asMap(compose.services, 'services');
/** The services running this repository's image. */
const instances = Object.entries(services).filter(([, s]) => {
  const build = asMap(s, 'service').build;
  return build !== undefined && asMap(build, 'build').dockerfile === 'deploy/Dockerfile';
});
const envOf = (service: Yaml | undefined) => asMap(asMap(service, 'service').environment, 'environment') as Record<string, string>;
/** What a user would export before `docker compose up` (the secrets compose asks for). */
const SAMPLE = { POSTGRES_PASSWORD: 'a1b2c3d4e5f6a7b8', ADMIN_API_KEY: '0123456789abcdef0123456789abcdef', LOG_LEVEL: 'info' };

interface Stage {
  from: string;
  name: string | null;
  instructions: Array<{ op: string; args: string }>;
}

/** The Dockerfile's stages and their instructions (continuation lines joined). */
function dockerfileStages(source: string): Stage[] {
  const joined = source.replace(/\\\n/g, ' ').split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  const stages: Stage[] = [];
  for (const line of joined) {
    const [, op = '', args = ''] = /^(\S+)\s+(.*)$/.exec(line) ?? [];
    if (op.toUpperCase() === 'FROM') {
      const [, from = '', name = null] = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args) ?? [];
      stages.push({ from, name, instructions: [] });
    } else {
      stages.at(-1)?.instructions.push({ op: op.toUpperCase(), args });
    }
  }
  return stages;
}

const stages = dockerfileStages(read('deploy/Dockerfile'));
const runtime = stages.at(-1) as Stage;
const instruction = (stage: Stage, op: string) => stage.instructions.filter((i) => i.op === op).map((i) => i.args);

/** `KEY=value` pairs of ENV instructions (the `ENV KEY value` form is not used). */
function envInstructions(stage: Stage): Record<string, string> {
  const env: Record<string, string> = {};
  for (const args of instruction(stage, 'ENV')) {
    for (const [, k = '', v = ''] of args.matchAll(/(\w+)=("[^"]*"|\S+)/g)) env[k] = v.replace(/^"|"$/g, '');
  }
  return env;
}

const packageJson = JSON.parse(read('package.json')) as { bin: Record<string, string> };
const BIN = packageJson.bin['agent-sessions'] as string;

const haproxyCfg = read(HAPROXY_CONFIG);

/** An HAProxy duration ("5m", "30s", "500ms", "1h"; a bare number is ms) in ms. */
function durationMs(text: string): number {
  const m = /^(\d+)(us|ms|s|m|h|d)?$/.exec(text);
  if (!m) throw new Error(`not a duration: ${text}`);
  const unit = { us: 0.001, ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] ?? 'ms'] as number;
  return Number(m[1]) * unit;
}

const cfgTimeout = (name: string): number => {
  const m = new RegExp(`^\\s*timeout\\s+${name}\\s+(\\S+)`, 'm').exec(haproxyCfg);
  if (!m) throw new Error(`haproxy.cfg has no timeout ${name}`);
  return durationMs(m[1] as string);
};

describe('deploy/compose.yaml', () => {
  it('runs PostgreSQL, Redis, NATS with JetStream on a volume, three instances and HAProxy', () => {
    expect(Object.keys(services)).toEqual(expect.arrayContaining(['postgres', 'redis', 'nats', 'haproxy']));
    expect(instances).toHaveLength(3);
    const nats = asMap(services.nats, 'nats');
    expect(nats.command).toContain('-js');
    expect(nats.volumes).toEqual([expect.stringMatching(/^nats-data:/)]);
    for (const name of ['postgres', 'redis', 'nats']) expect(asMap(services[name], name).healthcheck).toBeTruthy();
  });

  it('sets only real configuration keys on the instances, with values the configuration accepts', () => {
    const ids = new Set<string>();
    for (const [name, service] of instances) {
      const env = envOf(service);
      const unknown = Object.keys(env).filter((k) => !CONFIG_VARIABLES.includes(k));
      expect(unknown, `${name} sets variables that are not configuration keys`).toEqual([]);
      expect(Object.keys(env)).toEqual(expect.arrayContaining(['INSTANCE_ID', 'DATABASE_URL', 'REDIS_URL', 'NATS_URL', 'ADMIN_API_KEY', 'TRUST_PROXY']));
      // The admin key is the user's, from the environment: never a value in the file.
      expect(env.ADMIN_API_KEY).toMatch(/^\$\{ADMIN_API_KEY:\?[^}]+\}$/);
      expect(env.DATABASE_URL).toContain('${POSTGRES_PASSWORD}');
      // With the secrets filled in, and the image's own ENV under it, loadConfig accepts it all.
      const filled = Object.fromEntries(Object.entries(env).map(([k, v]) => [k, interpolate(v, SAMPLE)]));
      const config = loadConfig({ ...envInstructions(runtime), ...filled });
      expect(config.trustProxy, 'believe exactly one hop: HAProxy').toBe(1);
      expect(config.host).toBe('0.0.0.0');
      ids.add(config.instanceId);
      // Every instance waits for healthy dependencies.
      const dependsOn = asMap(asMap(service, name).depends_on, `${name}.depends_on`);
      for (const dep of ['postgres', 'redis', 'nats']) expect(asMap(dependsOn[dep], dep).condition).toBe('service_healthy');
    }
    expect(ids.size).toBe(3);
  });

  it('secrets are required from the environment, never written into the file', () => {
    const text = read('deploy/compose.yaml');
    expect(text).toMatch(/POSTGRES_PASSWORD: \$\{POSTGRES_PASSWORD:\?/);
    expect(text).not.toContain(SAMPLE.ADMIN_API_KEY);
  });

  it('HAProxy mounts deploy/haproxy.cfg and points its variables at the three instances on the image port', () => {
    const haproxy = asMap(services.haproxy, 'haproxy');
    expect(haproxy.volumes).toEqual([`./${path.basename(HAPROXY_CONFIG)}:/usr/local/etc/haproxy/haproxy.cfg:ro`]);
    const env = envOf(haproxy);
    const port = envInstructions(runtime).PORT;
    const names = instances.map(([n]) => n);
    expect(env).toEqual(haproxyEnv(':8080', names.map((n) => `${n}:${port}`) as [string, string, string]));
    expect(haproxy.ports).toEqual([expect.stringMatching(/:8080"?$/)]);
  });
});

describe('deploy/Dockerfile', () => {
  it('builds in one stage (npm ci, npm run build) and runs production dependencies in another', () => {
    expect(stages).toHaveLength(2);
    for (const stage of stages) expect(stage.from).toMatch(/^node:\d+(-[\w.]+)?$/);
    const [build] = stages as [Stage];
    expect(instruction(build, 'RUN').join('\n')).toMatch(/npm ci[\s\S]*npm run build/);
    expect(instruction(runtime, 'RUN').join('\n')).toMatch(/npm ci --omit=dev/);
    expect(instruction(runtime, 'COPY')).toContain(`--from=${build.name} /app/dist ./dist`);
  });

  it("starts the CLI's serve through package.json's bin", async () => {
    const [cmd] = instruction(runtime, 'CMD');
    expect(JSON.parse(cmd as string)).toEqual(['node', BIN, 'serve']);
    // The bin is the build of src/cli/index.ts (tsconfig.build.json: src -> dist).
    expect(existsSync(path.join(ROOT, BIN.replace(/^dist\//, 'src/').replace(/\.js$/, '.ts')))).toBe(true);
    const help = await runCli(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^\s+agent-sessions serve\b/m);
  });

  it('listens on 0.0.0.0, sets only configuration keys, checks /ready and runs as a non-root user', () => {
    const env = envInstructions(runtime);
    expect(Object.keys(env).filter((k) => !CONFIG_VARIABLES.includes(k))).toEqual([]);
    expect(env.HOST).toBe('0.0.0.0');
    expect(instruction(runtime, 'EXPOSE')).toEqual([env.PORT]);
    const [check] = instruction(runtime, 'HEALTHCHECK');
    expect(check).toMatch(/CMD .*\/ready/);
    const users = instruction(runtime, 'USER');
    expect(users).toHaveLength(1);
    expect(users[0]).not.toMatch(/^(root|0)(:|$)/);
    // USER comes before the start command, so the server never runs as root.
    const ops = runtime.instructions.map((i) => i.op);
    expect(ops.indexOf('USER')).toBeLessThan(ops.indexOf('CMD'));
  });

  it('.dockerignore keeps the context small without hiding what the build copies', () => {
    const ignored = read('.dockerignore').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    expect(ignored).toEqual(expect.arrayContaining(['node_modules', 'dist', '.git', '.env']));
    const copied = stages
      .flatMap((s) => instruction(s, 'COPY'))
      .filter((args) => !args.startsWith('--from'))
      .flatMap((args) => args.split(/\s+/).slice(0, -1));
    for (const source of copied) expect(ignored, `${source} is copied`).not.toContain(source);
  });
});

describe('deploy/haproxy.cfg', () => {
  it('balances round robin, checks /ready, forwards the client address and keeps SSE streams open past heartbeats', () => {
    expect(haproxyCfg).toMatch(/^\s*balance roundrobin$/m);
    expect(haproxyCfg).toMatch(/^\s*option httpchk GET \/ready$/m);
    expect(haproxyCfg).toMatch(/^\s*option forwardfor$/m);
    expect(haproxyCfg).toMatch(/^\s*option redispatch\b/m);
    expect(haproxyCfg).not.toMatch(/^\s*compression\b/m);
    const heartbeat = loadConfig({}).sseHeartbeatMs;
    for (const t of ['client', 'server']) expect(cfgTimeout(t)).toBeGreaterThan(4 * heartbeat);
    expect(cfgTimeout('connect')).toBeLessThanOrEqual(10_000);
  });

  it('reads every address from the variables the tests and compose set', () => {
    const used = new Set([...haproxyCfg.matchAll(/\$\{(\w+)\}/g)].map((m) => m[1]));
    expect([...used].sort()).toEqual(Object.keys(haproxyEnv('', ['', '', ''])).sort());
  });

  const haveHaproxy = requireBinaries(['haproxy'], 'deploy/haproxy.cfg (haproxy -c)', () => haproxyBinary());
  it.skipIf(!haveHaproxy)('is valid for HAProxy with the variables set as the end-to-end test sets them', () => {
    const env = haproxyEnv('127.0.0.1:18080', ['127.0.0.1:18081', '127.0.0.1:18082', '127.0.0.1:18083']);
    const check = spawnSync(haproxyBinary() as string, ['-c', '-f', path.join(ROOT, HAPROXY_CONFIG)], {
      env: { PATH: process.env.PATH ?? '', ...env },
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(check.status, `${check.stdout}${check.stderr}`).toBe(0);
    expect(check.stderr).not.toMatch(/\[WARNING\]|\[ALERT\]/);
  });
});
