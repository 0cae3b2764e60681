// Events: the tenant's live feed (/v1/events, shared with the other pages), newest first,
// filtered by type and session. Shows what arrived since this tab connected.
import { clear, h, json, shortId, time } from './dom.js';
import { recent, subscribe } from './feed.js';

const TYPES = [
  'session.created', 'session.updated', 'session.status_changed', 'session.terminated', 'session.expired',
  'session.timeout_warning', 'session.deleted', 'run.queued', 'run.started', 'run.completed', 'run.failed',
  'run.interrupted', 'run.cancelled', 'run.restarted', 'run.input', 'item.added',
  'item.updated',
];
const SHOWN = 300;

/** The gist of an event's data, for its line: a status change, a run, an item. */
function gist(e) {
  const d = e.data && typeof e.data === 'object' ? e.data : {};
  if (typeof d.from === 'string' && typeof d.to === 'string') return `${d.from} → ${d.to}`;
  const parts = [];
  if (typeof d.run_id === 'string') parts.push(`run ${shortId(d.run_id)}`);
  if (typeof d.status === 'string') parts.push(d.status);
  if (typeof d.reason === 'string') parts.push(d.reason);
  if (typeof d.owner === 'string') parts.push(`on ${d.owner}`);
  return [...new Set(parts)].join(' · ');
}

function row(e) {
  return h('li.event', { 'data-testid': 'event-row', 'data-event-id': e.id, 'data-type': e.type, 'data-session-id': e.session_id ?? '' },
    h('details', {},
      h('summary', {},
        h('time.muted', { title: e.occurred_at }, time(e.occurred_at)), ' ',
        h('span.event-type', { 'data-kind': e.type.split('.')[0] }, e.type), ' ',
        e.session_id ? h('a.mono', { href: `#/sessions/${encodeURIComponent(e.session_id)}`, title: e.session_id }, shortId(e.session_id)) : null, ' ',
        h('span.gist', {}, gist(e)), ' ',
        h('span.muted.small', {}, `#${e.id}`)),
      h('pre', {}, json(e.data))));
}

export const eventsPage = {
  id: 'events',
  title: 'Events',
  mount(root, { params }) {
    const type = h('select', { id: 'ev-type' }, h('option', { value: '' }, 'any type'),
      h('option', { value: 'session.' }, 'session.*'), h('option', { value: 'run.' }, 'run.*'),
      TYPES.map((t) => h('option', { value: t, selected: t === params.get('type') }, t)));
    const session = h('input', { id: 'ev-session', type: 'text', value: params.get('session_id') ?? '', placeholder: 'session id (prefix)', autocomplete: 'off' });
    const paused = h('input', { id: 'ev-pause', type: 'checkbox' });
    const list = h('ol.events', { 'aria-live': 'polite', 'aria-relevant': 'additions' });
    const count = h('span.muted');
    root.append(
      h('div.page-head', {}, h('h1', {}, 'Events'), count),
      h('form.filters', { onsubmit: (e) => e.preventDefault() },
        h('label', {}, 'Type', type),
        h('label', {}, 'Session', session),
        h('label.check', {}, paused, ' Pause')),
      h('p.muted', {}, 'The tenant’s events as they are committed, since this tab connected. Open one for its data.'),
      list,
    );

    const matches = (e) => {
      const t = type.value;
      if (t && !(t.endsWith('.') ? e.type.startsWith(t) : e.type === t)) return false;
      const s = session.value.trim().toLowerCase();
      return !s || (e.session_id ?? '').toLowerCase().startsWith(s);
    };
    const render = () => {
      const shown = recent.filter(matches).slice(-SHOWN).reverse();
      clear(list, shown.length ? shown.map(row) : h('li.muted', {}, 'No events yet. They appear here as they happen.'));
      count.textContent = `${shown.length} shown`;
    };
    const remember = () => {
      const q = new URLSearchParams();
      if (type.value) q.set('type', type.value);
      if (session.value.trim()) q.set('session_id', session.value.trim());
      history.replaceState(null, '', `#/events${q.size ? `?${q}` : ''}`);
      render();
    };
    type.addEventListener('change', remember);
    session.addEventListener('input', remember);
    paused.addEventListener('change', () => paused.checked || render());

    const unsubscribe = subscribe((e) => {
      if (paused.checked || !matches(e)) return;
      list.querySelector('li.muted')?.remove();
      list.prepend(row(e));
      while (list.children.length > SHOWN) list.lastElementChild.remove();
      count.textContent = `${list.children.length} shown`;
    });
    render();
    return { dispose: unsubscribe };
  },
};
