// Overview: tiles from /v1/stats (refreshed every few seconds) and a chart of runs started
// and events per 10 s over the last 5 minutes, counted from the live feed.
import { api } from './api.js';
import { h, clear, num, svg } from './dom.js';
import { recent, subscribe } from './feed.js';

const BUCKET_MS = 10_000;
const BUCKETS = 30;
const REFRESH_MS = 5_000;

function tile(label, value, detail, extra = {}) {
  return h('div.tile', { 'data-testid': 'stats-tile', 'data-tile': extra.name, role: 'group', 'aria-label': label },
    h('div.tile-label', {}, label),
    h('div.tile-value', {}, value),
    detail ? h('div.tile-detail', {}, detail) : null);
}

function ratio(r) {
  return typeof r === 'number' ? `${(r * 100).toFixed(1)} %` : '—';
}

function tiles(stats) {
  const by = stats.sessions.by_status;
  const live = ['active', 'idle', 'waiting_input', 'initializing'].reduce((n, s) => n + (by[s] ?? 0), 0);
  const out = [
    tile('Sessions', num(stats.sessions.total), `${num(live)} live`, { name: 'sessions' }),
    tile('Active runs', num(stats.runs.active), `on instance ${stats.instance_id} and others`, { name: 'runs' }),
  ];
  for (const status of ['active', 'idle', 'waiting_input', 'terminated', 'expired', 'failed']) {
    out.push(tile(`Status: ${status}`, num(by[status] ?? 0), null, { name: `status-${status}` }));
  }
  const o = stats.outbox;
  out.push(tile('Outbox backlog', o.backlog === null ? '—' : num(o.backlog), o.publisher ? `publisher: ${o.publisher}` : 'no publisher configured', { name: 'outbox' }));
  out.push(tile('Oldest unpublished', o.oldest_unpublished_age_seconds === null ? '—' : `${o.oldest_unpublished_age_seconds.toFixed(1)} s`,
    o.relay ? `${num(o.relay.published)} published, ${num(o.relay.failures)} failures` : null, { name: 'outbox-age' }));
  for (const [tier, c] of Object.entries(stats.cache)) {
    out.push(tile(`Cache hit ratio (${tier})`, ratio(c.hit_ratio), `${num(c.hits)} hits, ${num(c.misses)} misses`, { name: `cache-${tier}` }));
  }
  return out;
}

/** Counts per bucket of `BUCKET_MS` ending now, oldest first. */
function bucketsOf(events, match, now) {
  const counts = new Array(BUCKETS).fill(0);
  const start = now - BUCKETS * BUCKET_MS;
  for (const e of events) {
    if (!match(e) || e.received_at < start) continue;
    const i = Math.min(BUCKETS - 1, Math.floor((e.received_at - start) / BUCKET_MS));
    counts[i]++;
  }
  return counts;
}

function chart(now) {
  const runs = bucketsOf(recent, (e) => e.type === 'run.started', now);
  const all = bucketsOf(recent, () => true, now);
  const max = Math.max(1, ...all);
  const W = 600;
  const H = 140;
  const bw = W / BUCKETS;
  const bars = [];
  for (let i = 0; i < BUCKETS; i++) {
    const ah = (all[i] / max) * (H - 20);
    const rh = (runs[i] / max) * (H - 20);
    bars.push(svg('rect', { class: 'bar-events', x: i * bw + 1, y: H - ah, width: bw - 2, height: ah }, svg('title', {}, document.createTextNode(`${all[i]} events`))));
    bars.push(svg('rect', { class: 'bar-runs', x: i * bw + 1, y: H - rh, width: bw - 2, height: rh }, svg('title', {}, document.createTextNode(`${runs[i]} runs started`))));
  }
  const totalRuns = runs.reduce((a, b) => a + b, 0);
  const totalEvents = all.reduce((a, b) => a + b, 0);
  return h('figure.chart', {},
    svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `${totalRuns} runs started and ${totalEvents} events in the last 5 minutes`, preserveAspectRatio: 'none' },
      svg('line', { class: 'axis', x1: 0, y1: H - 0.5, x2: W, y2: H - 0.5 }),
      ...bars),
    h('figcaption', {},
      h('span.key-runs', {}, `■ runs started (${totalRuns})`), ' ',
      h('span.key-events', {}, `■ all events (${totalEvents})`),
      ` per 10 s, last 5 minutes, max ${max} — counted from the live feed since this tab connected`));
}

export const overviewPage = {
  id: 'overview',
  title: 'Overview',
  mount(root) {
    const tilesEl = h('div.tiles', { 'aria-live': 'off' }, h('p.muted', {}, 'Loading…'));
    const chartEl = h('div');
    const error = h('p.error', { role: 'alert' });
    const updated = h('span.muted');
    root.append(
      h('div.page-head', {}, h('h1', {}, 'Overview'), updated),
      error,
      tilesEl,
      h('h2', {}, 'Activity'),
      chartEl,
    );
    const controller = new AbortController();
    let timer = null;
    async function refresh() {
      try {
        const stats = await api('GET', '/v1/stats', undefined, { signal: controller.signal });
        clear(tilesEl, tiles(stats));
        error.textContent = '';
        updated.textContent = `tenant ${stats.tenant} · updated ${new Date().toLocaleTimeString()}`;
      } catch (err) {
        if (!controller.signal.aborted) error.textContent = `Stats: ${err.message}`;
      }
      if (!controller.signal.aborted) timer = setTimeout(refresh, REFRESH_MS);
    }
    const draw = () => clear(chartEl, chart(Date.now()));
    draw();
    const tick = setInterval(draw, 2_000);
    const unsubscribe = subscribe(() => draw());
    void refresh();
    return {
      dispose() {
        controller.abort();
        clearTimeout(timer);
        clearInterval(tick);
        unsubscribe();
      },
    };
  },
};
