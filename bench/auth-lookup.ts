/**
 * The cost of looking the API key up in PostgreSQL on every request (what makes a
 * revocation effective on every instance at once). Compares GET /v1/sessions/:id through
 * app.inject with a key against the same route with auth off, and times authenticate().
 *
 *   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npx tsx bench/auth-lookup.ts
 */
import { createSessions, internals } from '../src/internal.js';
import { buildApp } from '../src/server/app.js';

const N = Number(process.env.N ?? 3000);
const databaseUrl = process.env.DATABASE_URL;
if (!databaseUrl) throw new Error('set DATABASE_URL');

const sessions = await createSessions({ env: {}, databaseUrl, rateLimitPerMinute: 0 });
const { key } = await internals(sessions).apiKeys.create({ tenant: 'bench', scopes: ['read'] });
const session = await sessions.create({}, { tenant: 'bench' });
const withAuth = await buildApp({ sessions, logger: false });
// noAuth acts as tenant "default"; give it a session of its own so both routes do the same work.
const open = await buildApp({ sessions, logger: false, noAuth: true });
const openSession = await sessions.create({}, { tenant: 'default' });

/** Median µs per call over interleaved rounds, so a noisy neighbour hits every variant alike. */
async function measure(variants: Record<string, () => Promise<unknown>>, rounds = 10): Promise<Record<string, number>> {
  const samples: Record<string, number[]> = Object.fromEntries(Object.keys(variants).map((k) => [k, []]));
  for (const fn of Object.values(variants)) for (let i = 0; i < 200; i++) await fn();
  for (let r = 0; r < rounds; r++) {
    for (const [label, fn] of Object.entries(variants)) {
      const started = performance.now();
      for (let i = 0; i < N / rounds; i++) await fn();
      samples[label]?.push(((performance.now() - started) * 1000) / (N / rounds));
    }
  }
  return Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, v.sort((x, y) => x - y)[Math.floor(v.length / 2)] ?? 0]));
}

const headers = { authorization: `Bearer ${key}` };
const m = await measure({
  'GET session, key looked up': () => withAuth.inject({ method: 'GET', url: `/v1/sessions/${session.id}`, headers }),
  'GET session, auth off': () => open.inject({ method: 'GET', url: `/v1/sessions/${openSession.id}` }),
  'apiKeys.authenticate() alone': () => internals(sessions).apiKeys.authenticate(key),
});
for (const [label, us] of Object.entries(m)) {
  process.stdout.write(`${label.padEnd(30)} ${us.toFixed(0).padStart(6)} µs/op (median of 10 rounds)\n`);
}
const a = m['GET session, key looked up'] ?? 0;
const b = m['GET session, auth off'] ?? 0;
process.stdout.write(`per-request cost of the lookup: ${(a - b).toFixed(0)} µs (${(((a - b) / b) * 100).toFixed(0)}% of the request without it)\n`);
await withAuth.close();
await open.close();
await sessions.close();
