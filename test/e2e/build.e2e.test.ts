/**
 * The built package, as `npm start` and library users get it: the build (`npm run build`'s
 * two steps, into the run's shared package directory) succeeds, the package's entry points
 * (library, client, opentelemetry) load by name, and the built CLI serves requests that the built client makes.
 * Everything else runs the sources through tsx, so only this file would notice a file
 * missing from dist/ (migrations, Lua scripts, the console) or a broken export.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { builtPackage, type BuiltPackage } from '../setup/built-package.js';
import { startServer, type ServerProcess } from '../setup/server-process.js';

const KEY = 'build-e2e-admin-key-0123456789abcdef';

describe('e2e/build', { timeout: 300_000 }, () => {
  let server: ServerProcess | null = null;
  let pkg: BuiltPackage;
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'as-build-'));

  beforeAll(async () => {
    pkg = await builtPackage();
    console.log(`package build: ${pkg.buildMs} ms${pkg.builtHere ? '' : ' (made by another file)'}`);
  }, 300_000);

  afterAll(async () => {
    await server?.stop('SIGTERM');
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('loads the entry points by package name', () => {
    const script = `
      const lib = await import('agent-sessions');
      const client = await import('agent-sessions/client');
      const otel = await import('agent-sessions/opentelemetry');
      console.log(JSON.stringify([typeof lib.createSessions, typeof client.AgentSessionsClient, typeof lib.AgentSessionsClient, typeof otel.openTelemetryTracing]));`;
    // From the package's own directory the name resolves to it (a package may import itself).
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: pkg.dir, encoding: 'utf8', timeout: 60_000 });
    expect(run.stderr).toBe('');
    expect(JSON.parse(run.stdout)).toEqual(['function', 'function', 'function', 'function']);
  });

  it('serves from dist/: the built client creates, reads and terminates a session', async () => {
    server = await startServer({ cli: [path.join(pkg.dir, 'dist/cli/index.js')], env: { DATA_DIR: dataDir, ADMIN_API_KEY: KEY } });
    const { AgentSessionsClient } = (await import(
      pathToFileURL(path.join(pkg.dir, 'dist/client/index.js')).href
    )) as typeof import('../../src/client/index.js');
    const client = new AgentSessionsClient({ baseUrl: server.url, apiKey: KEY });
    const created = await client.create({ title: 'from the build' });
    expect(await client.get(created.id)).toMatchObject({ id: created.id, title: 'from the build' });
    await client.terminate(created.id, { reason: 'done' });
    expect((await client.get(created.id)).status).toBe('terminated');
    // The console and the migrations came along into dist/.
    expect((await fetch(`${server.url}/`)).status).toBe(200);
    for (const asset of ['main.js', 'page-session.js', 'console.css']) {
      expect((await fetch(`${server.url}/console/${asset}`)).status, asset).toBe(200);
    }
  });
});
