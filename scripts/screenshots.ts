/**
 * `npm run screenshots`: starts an embedded server (in-memory PGlite, the demo agent) in this
 * process, fills it with a few sessions, history, runs, events and keys, and photographs each
 * console page with Debian's Chromium into docs/screenshots/*.png (1280×800, and two pages at
 * phone width). Run by hand when the console changes; CI never writes tracked files.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import { createSessions } from '../src/index.js';
import { buildApp } from '../src/server/app.js';
import { AgentSessionsClient } from '../src/client/index.js';
import { CHROMIUM_PATH, chromiumAvailable, launchChromium } from './chromium.js';

const OUT = fileURLToPath(new URL('../docs/screenshots/', import.meta.url));
const KEY = 'screenshots-admin-key-0123456789';

async function main(): Promise<void> {
  if (!chromiumAvailable()) throw new Error(`no Chromium at ${CHROMIUM_PATH} (apt-get install chromium, or set CHROMIUM_PATH)`);
  mkdirSync(OUT, { recursive: true });
  const sessions = await createSessions({ env: { DATA_DIR: ':memory:', ADMIN_API_KEY: KEY, INSTANCE_ID: 'console-demo' } });
  const app = await buildApp({ sessions });
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  const api = new AgentSessionsClient({ baseUrl: url, apiKey: KEY });
  const browser = await launchChromium();
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    await page.goto(url);
    await page.getByTestId('key-input').fill(KEY);
    await page.getByTestId('key-save').click();
    await page.locator('#feed-state[data-state="live"]').waitFor({ timeout: 15_000 });

    const demo = await seed(api);
    const shot = async (p: Page, name: string) => {
      await p.screenshot({ path: path.join(OUT, `${name}.png`) });
      console.log(`docs/screenshots/${name}.png`);
    };

    await page.goto(`${url}/#/sessions`);
    await page.getByTestId('session-row').nth(5).waitFor();
    await shot(page, 'sessions');

    // A run streaming while the page is open.
    await page.goto(`${url}/#/sessions/${demo}`);
    await page.locator('li.item').first().waitFor();
    await api.runs.start(demo, { text: 'Which orders are still open?', words: 80, delay_ms: 90 });
    await page.locator('[data-testid="run-output"] .t-text').nth(30).waitFor({ timeout: 20_000 });
    await shot(page, 'session');

    await page.goto(`${url}/#/events`);
    await page.getByTestId('event-row').nth(3).waitFor();
    await shot(page, 'events');

    await page.goto(`${url}/#/`);
    await page.getByTestId('stats-tile').first().waitFor();
    await shot(page, 'overview');

    await page.goto(`${url}/#/keys`);
    await page.locator('tr[data-key-id]').first().waitFor();
    await page.locator('#k-name').fill('billing worker');
    await page.getByRole('button', { name: 'Create' }).click();
    await page.locator('input.secret').waitFor();
    await shot(page, 'keys');

    const phone = await browser.newPage({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
    await phone.goto(url);
    await phone.getByTestId('key-input').fill(KEY);
    await phone.getByTestId('key-save').click();
    await phone.goto(`${url}/#/sessions`);
    await phone.getByTestId('session-row').nth(3).waitFor();
    await shot(phone, 'sessions-phone');
    await phone.goto(`${url}/#/sessions/${demo}`);
    await phone.locator('li.run').first().waitFor();
    await shot(phone, 'session-phone');
  } finally {
    await browser.close();
    await app.close();
    await sessions.close();
  }
}

/** Sessions, history with tool calls, runs, a terminated session and keys; returns the one to show. */
async function seed(api: AgentSessionsClient): Promise<string> {
  const users = ['ada', 'grace', 'linus', 'margaret'];
  const titles = ['Refund for order 1182', 'Onboarding checklist', 'Weekly sales summary', 'Flight rebooking', 'Invoice dispute', 'Password reset loop', 'Quarterly forecast'];
  const ids: string[] = [];
  for (const [i, title] of titles.entries()) {
    const s = await api.create({ title, user_id: users[i % users.length], model: 'gpt-4.1-mini', metadata: { channel: i % 2 ? 'web' : 'slack', plan: 'pro' } });
    await api.incrementCounters(s.id, { total_turns: 2 + i, message_count: 4 + 2 * i, total_cost_usd: 0.0137 * (i + 1), input_tokens: 812 * (i + 1), output_tokens: 301 * (i + 1) });
    ids.push(s.id);
  }
  await api.update(ids[3] as string, { status: 'waiting_input' });
  await api.terminate(ids[5] as string, { reason: 'resolved' });
  const demo = ids[0] as string;
  await api.items.append(demo, [
    { role: 'user', content: { text: 'I was charged twice for order 1182. Can I get a refund?' } },
    { role: 'assistant', type: 'tool_call', content: { name: 'lookup_order', arguments: { order_id: 1182 } } },
    { role: 'tool', type: 'tool_result', content: { order_id: 1182, charges: [{ amount: 49.9, at: '2026-11-28T10:02:00Z' }, { amount: 49.9, at: '2026-11-28T10:02:03Z' }] } },
    { role: 'assistant', content: { text: 'I found two identical charges three seconds apart. I refunded the second one; it shows up in 3–5 business days.' } },
    { role: 'user', content: 'Thanks! Which orders are still open?' },
  ]);
  const first = await api.runs.start(demo, { text: 'I was charged twice', words: 12, delay_ms: 10 });
  for await (const e of api.runs.stream(demo, { lastEventId: (first.start_seq ?? 1) - 1 })) if (e.type === 'done') break;
  const second = await api.runs.start(demo, { text: 'a long answer', words: 400, delay_ms: 30 });
  await new Promise((r) => setTimeout(r, 400));
  await api.runs.interrupt(demo, { runId: second.id });
  await api.fork(demo, { title: 'Refund for order 1182 (what if)' });
  await api.keys.create({ tenant: 'default', scopes: ['read', 'write', 'runs'], name: 'support bot' });
  await api.keys.create({ tenant: 'acme', scopes: ['read'], name: 'acme dashboards' });
  return demo;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
