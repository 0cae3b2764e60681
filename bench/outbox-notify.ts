/**
 * Why writers do not NOTIFY: session creates per second at 16 concurrent writers, as shipped
 * (wake-ups sent after commit, src/adapters/postgres/outbox-signal.ts) and with a NOTIFY
 * trigger on outbox inserts added for comparison (PostgreSQL serializes the commits of
 * notifying transactions). Uses a scratch database it creates and drops.
 *
 *   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npx tsx bench/outbox-notify.ts
 */
import pg from 'pg';
import { createSessions, internals } from '../src/internal.js';

const N = Number(process.env.N ?? 3000);
const CONCURRENCY = 16;
const adminUrl = process.env.DATABASE_URL;
if (!adminUrl) throw new Error('set DATABASE_URL');

const admin = new pg.Client({ connectionString: adminUrl });
await admin.connect();
const name = `as_bench_notify_${Date.now()}`;
await admin.query(`CREATE DATABASE ${name}`);
const url = new URL(adminUrl);
url.pathname = `/${name}`;
const sessions = await createSessions({ env: {}, databaseUrl: url.toString(), sweepIntervalMs: 0 });

async function run(label: string): Promise<void> {
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next++ < N) await sessions.create({ title: 'bench' });
    }),
  );
  const perSecond = Math.round(N / ((performance.now() - started) / 1000));
  process.stdout.write(`${label.padEnd(48)} ${perSecond} creates/s\n`);
}

try {
  await run('warm-up');
  for (let round = 0; round < 3; round++) {
    await run('as shipped (wake-up after commit)');
    await internals(sessions).db.query(
      `CREATE FUNCTION bench_notify() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_notify('bench', ''); RETURN NULL; END $$`,
    );
    await internals(sessions).db.query('CREATE TRIGGER bench_notify AFTER INSERT ON outbox FOR EACH STATEMENT EXECUTE FUNCTION bench_notify()');
    await run('with a NOTIFY trigger inside each write');
    await internals(sessions).db.query('DROP TRIGGER bench_notify ON outbox');
    await internals(sessions).db.query('DROP FUNCTION bench_notify()');
  }
} finally {
  await sessions.close();
  await admin.query(`DROP DATABASE ${name} WITH (FORCE)`);
  await admin.end();
}
