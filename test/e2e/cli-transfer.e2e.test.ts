/**
 * `agent-sessions export` and `import` as processes, embedded → PostgreSQL (with Redis) →
 * embedded: a directory populated through the library (two tenants, metadata, counters, a fork,
 * items, runs with output and input, keys revoked and not, events published and pending) is
 * exported, imported into a fresh database, exported again and imported into a new directory.
 * Every table's rows are identical at each hop, and so is what the library reads. Then the
 * refusals (a target with data, a truncated file: nothing changes) and a directory a running
 * server holds (export goes through the server, import refuses).
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createClient } from 'redis';
import { afterAll, describe, expect, it } from 'vitest';
import { createSessions, internals, openDatabase, type Sessions } from '../../src/internal.js';
import type { SqlDatabase } from '../../src/adapters/postgres/database.js';
import { EXPORTED_TABLES } from '../../src/adapters/postgres/data-transfer.js';
import type { Runner } from '../../src/core/runs.js';
import { runCli, startServer, type CliResult, type ServerProcess } from '../setup/server-process.js';
import { freshDatabase, requireServices, serviceUrl, uniqueKeyPrefix, within, type FreshDatabase } from '../setup/harness.js';

/** Every table's rows as PostgreSQL's text form of the record, sorted: what "identical" means. */
async function contents(db: Pick<SqlDatabase, 'transaction'>): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  await db.transaction(async (tx) => {
    await tx.exec("SET LOCAL TimeZone = 'UTC'");
    for (const t of EXPORTED_TABLES) out[t] = (await tx.query<{ r: string }>(`SELECT t::text AS r FROM ${t} t ORDER BY 1`)).map((r) => r.r);
  });
  return out;
}

/** An export's lines but its header (which names the time and the source). */
const body = (text: string) => text.trimEnd().split('\n').slice(1);

function oneLine(result: CliResult): string {
  const lines = result.stderr.trim().split('\n');
  expect(lines, result.stderr).toHaveLength(1);
  return lines[0] ?? '';
}

/** A runner that says hello, and when asked to waits for one input and echoes it. */
const agent: Runner = async (run) => {
  const input = run.input as { n: number; waitForInput?: boolean };
  await run.emit({ type: 'text', data: { text: `hello ${input.n}`, n: input.n } });
  if (input.waitForInput) {
    for await (const more of run.inputs) {
      await run.emit({ type: 'echo', data: more });
      break;
    }
  }
};

interface Fixture {
  ids: { s1: string; fork: string; s2: string };
  keys: { live: string; revoked: string };
}

async function populate(sessions: Sessions): Promise<Fixture> {
  const acme = { tenant: 'acme' };
  const globex = { tenant: 'globex' };
  const s1 = await sessions.create(
    { userId: 'u1', orgId: 'o1', model: 'gpt-x', title: 'first', mcpClientIds: ['fs', 'git'], metadata: { plan: 'pro', tags: ['a', 'b'], ratio: 0.1 } },
    acme,
  );
  await sessions.items.append(
    s1.id,
    [
      { role: 'user', content: { text: 'hi ünïcode 😀' } },
      { role: 'assistant', content: { text: 'hello' } },
      { role: 'tool', type: 'tool_result', content: { ok: true, rows: [1, 2, 3] } },
    ],
    acme,
  );
  await sessions.incrementCounters(s1.id, { totalTurns: 2, totalCostUsd: 0.0123456789, inputTokens: 1000, outputTokens: 42 }, acme);
  await sessions.withSessionLock(s1.id, (lock) => sessions.update(s1.id, { title: 'renamed' }, { ...acme, fencingToken: lock.fencingToken }), acme);
  const run1 = await sessions.runs.start(s1.id, agent, { ...acme, input: { n: 1, waitForInput: true } });
  await within(10_000, () =>
    sessions.runs.sendInput(s1.id, { text: 'more' }, acme).then(
      () => true,
      () => false,
    ),
  );
  await sessions.runs.wait(s1.id, run1.id, acme);
  const fork = await sessions.fork(s1.id, { title: 'fork' }, acme);

  const s2 = await sessions.create({ userId: 'u2', metadata: { n: 2 } }, globex);
  await sessions.items.append(s2.id, [{ role: 'user', content: { text: 'bye' } }], globex);
  const run2 = await sessions.runs.start(s2.id, agent, { ...globex, input: { n: 2 } });
  await sessions.runs.wait(s2.id, run2.id, globex);
  await sessions.terminate(s2.id, 'done_here', globex);

  const { apiKeys, db } = internals(sessions);
  const live = await apiKeys.create({ tenant: 'acme', scopes: ['read', 'write'], name: 'app' });
  await apiKeys.create({ tenant: 'globex', scopes: ['admin'], name: 'root', root: true });
  const revoked = await apiKeys.create({ tenant: 'globex', scopes: ['read'] });
  await apiKeys.revoke(revoked.record.id);
  // Events: embedded mode has no broker; say the first few went out, so both kinds travel.
  await db.query('UPDATE outbox SET published_at = now() WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT 3)');
  return { ids: { s1: s1.id, fork: fork.id, s2: s2.id }, keys: { live: live.key, revoked: revoked.key } };
}

/** What the library reads of the fixture. */
async function reads(sessions: Sessions, f: Fixture): Promise<unknown> {
  const acme = { tenant: 'acme' };
  const output: unknown[] = [];
  for await (const e of sessions.runs.stream(f.ids.s1, { ...acme, after: 0, signal: AbortSignal.timeout(10_000) })) output.push(e);
  const { apiKeys } = internals(sessions);
  return {
    s1: await sessions.get(f.ids.s1, acme),
    fork: await sessions.get(f.ids.fork, acme),
    s2: await sessions.get(f.ids.s2, { tenant: 'globex' }),
    items: await sessions.items.list(f.ids.s1, {}, acme),
    forkItems: await sessions.items.list(f.ids.fork, {}, acme),
    runs: await sessions.runs.list(f.ids.s1, {}, acme),
    output,
    live: await apiKeys.authenticate(f.keys.live),
    revoked: await apiKeys.authenticate(f.keys.revoked),
  };
}

const ready = requireServices(['postgres', 'redis'], 'e2e/cli export and import');

describe.skipIf(!ready)('e2e/cli export and import', { timeout: 240_000 }, () => {
  const base = mkdtempSync(path.join(os.tmpdir(), 'agent-sessions-transfer-'));
  const dir1 = path.join(base, 'one');
  const dir2 = path.join(base, 'two');
  const file = (name: string) => path.join(base, name);
  const databases: FreshDatabase[] = [];
  let server: ServerProcess | null = null;
  afterAll(async () => {
    await server?.stop('SIGKILL');
    for (const db of databases) await db.drop();
    rmSync(base, { recursive: true, force: true });
  });

  it('moves a directory to PostgreSQL and back, identical at each hop; refuses what it must; exports through a running server', async () => {
    const timings: Record<string, number> = {};
    const cli = async (what: string, args: string[], env: Record<string, string>) => {
      const result = await runCli(args, env, 120_000);
      timings[what] = Math.round(result.elapsedMs);
      return result;
    };

    // An embedded directory, populated through the library.
    const one = await createSessions({ env: { DATA_DIR: dir1, RUN_SWEEP_INTERVAL_MS: '0' } });
    let fixture: Fixture;
    let expectedRows: Record<string, string[]>;
    let expectedReads: unknown;
    try {
      fixture = await populate(one);
      expectedRows = await contents(internals(one).db);
      expectedReads = await reads(one, fixture);
    } finally {
      await one.close();
    }
    for (const t of EXPORTED_TABLES) expect(expectedRows[t]?.length, t).toBeGreaterThan(0);

    const exported1 = await cli('export embedded', ['export', '--output', file('one.ndjson')], { DATA_DIR: dir1 });
    expect(exported1.code, exported1.stderr).toBe(0);
    expect(exported1.stdout).toBe('');
    expect(oneLine(exported1)).toMatch(/exported \d+ rows/);
    const text1 = readFileSync(file('one.ndjson'), 'utf8');

    // Three things at once (each waits on its own processes): the hops through PostgreSQL and back,
    // a truncated file, and a running server on the first directory.
    const lines = text1.trimEnd().split('\n');
    await Promise.all([hops(), truncatedFile(), heldDirectory()]);

    /** Into a fresh PostgreSQL database with Redis, out again, into a new directory; then a second import into the full one. */
    async function hops(): Promise<void> {
      const pg = await freshDatabase();
      databases.push(pg);
      const keyPrefix = uniqueKeyPrefix();
      const pgEnv = { DATABASE_URL: pg.url, REDIS_URL: serviceUrl('redis'), KEY_PREFIX: keyPrefix };
      // What the key prefix held before the import is gone after it.
      const redis = createClient({ url: serviceUrl('redis') });
      await redis.connect();
      try {
        await redis.set(`${keyPrefix}session:{${fixture.ids.s1}}`, 'a stale copy');
        const imported = await cli('import into PostgreSQL', ['import', '--input', file('one.ndjson')], pgEnv);
        expect(imported.code, imported.stderr).toBe(0);
        const summary = JSON.parse(imported.stdout) as { rows: Record<string, number> };
        expect(summary.rows).toEqual(Object.fromEntries(EXPORTED_TABLES.map((t) => [t, expectedRows[t]?.length])));
        expect(await redis.keys(`${keyPrefix}*`)).toEqual([]);
      } finally {
        await redis.close();
      }

      const exported2 = await cli('export PostgreSQL', ['export'], pgEnv);
      expect(exported2.code, exported2.stderr).toBe(0);
      expect(body(exported2.stdout)).toEqual(body(text1));
      expect(JSON.parse(exported2.stdout.slice(0, exported2.stdout.indexOf('\n')))).toMatchObject({ source: 'postgres' });
      writeFileSync(file('two.ndjson'), exported2.stdout);

      const importedBack = await cli('import embedded', ['import', '--input', file('two.ndjson')], { DATA_DIR: dir2 });
      expect(importedBack.code, importedBack.stderr).toBe(0);

      // The rows, and what the library reads, are the same in PostgreSQL (through Redis) and in the new directory.
      for (const env of [{ ...pgEnv, RUN_SWEEP_INTERVAL_MS: '0' }, { DATA_DIR: dir2, RUN_SWEEP_INTERVAL_MS: '0' }]) {
        const sessions = await createSessions({ env });
        try {
          expect(await contents(internals(sessions).db)).toEqual(expectedRows);
          expect(await reads(sessions, fixture)).toEqual(expectedReads);
          // New rows do not collide with imported ones (the sequences moved past them).
          const created = await sessions.create({ title: 'after the move' }, { tenant: 'acme' });
          expect(await sessions.get(created.id, { tenant: 'acme' })).toMatchObject({ title: 'after the move' });
        } finally {
          await sessions.close();
        }
      }

      // A target that holds data refuses, and nothing changes.
      const direct = openDatabase({ databaseUrl: pg.url, dataDir: '', instanceId: 'test' });
      try {
        const rowsBefore = await contents(direct);
        const occupied = await cli('refused: target holds data', ['import', '--input', file('one.ndjson')], pgEnv);
        expect(occupied.code).toBe(1);
        expect(occupied.stdout).toBe('');
        expect(oneLine(occupied)).toMatch(/already holds data \(sessions, session_items, runs, run_inputs, run_output, outbox, api_keys\)/);
        expect(await contents(direct)).toEqual(rowsBefore);
      } finally {
        await direct.close();
      }
    }

    /** A truncated file into an empty database refuses, and leaves it empty (not even migrated). */
    async function truncatedFile(): Promise<void> {
      const empty = await freshDatabase();
      databases.push(empty);
      writeFileSync(file('truncated.ndjson'), `${lines.slice(0, -2).join('\n')}\n${(lines.at(-2) ?? '').slice(0, 40)}`);
      const truncated = await cli('refused: truncated file', ['import', '--input', file('truncated.ndjson')], { DATABASE_URL: empty.url });
      expect(truncated.code).toBe(1);
      expect(oneLine(truncated)).toMatch(/damaged or truncated/);
      const untouched = openDatabase({ databaseUrl: empty.url, dataDir: '', instanceId: 'test' });
      try {
        const [row] = await untouched.query<{ tables: number }>(
          "SELECT count(*)::int AS tables FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace",
        );
        expect(row?.tables).toBe(0);
      } finally {
        await untouched.close();
      }
    }

    /** A running server holds the first directory: export goes through it (to stdout), import refuses. */
    async function heldDirectory(): Promise<void> {
      server = await startServer({ env: { DATA_DIR: dir1 }, timeoutMs: 120_000 });
      const pid = server.child.pid;
      const [throughServer, heldImport] = await Promise.all([
        cli('export through the server', ['export'], { DATA_DIR: dir1 }),
        cli('refused: held directory', ['import', '--input', file('one.ndjson')], { DATA_DIR: dir1 }),
      ]);
      expect(throughServer.code, throughServer.stderr).toBe(0);
      expect(body(throughServer.stdout)).toEqual(body(text1));
      expect(readdirSync(dir1).filter((f) => f.startsWith('export-'))).toEqual([]);
      expect(heldImport.code).toBe(1);
      expect(oneLine(heldImport)).toMatch(new RegExp(`in use by process ${pid}`));
    }

    console.log(`export/import of ${lines.length - 2} rows (ms): ${JSON.stringify(timings)}`);
  });
});
