// Sessions: a paged list with filters (status, user, updated since) and search (id prefix or
// part of the title, `?q=`), kept live from the event feed: new sessions appear at the top,
// a session's status, counters and cost change in place.
import { api, query } from './api.js';
import { ago, badge, clear, cost, h, num, shortId } from './dom.js';
import { subscribe } from './feed.js';

const STATUSES = ['initializing', 'active', 'idle', 'waiting_input', 'terminated', 'failed', 'expired'];
const PAGE = 50;

function filtersFrom(params) {
  return {
    q: params.get('q') ?? '',
    status: STATUSES.includes(params.get('status')) ? params.get('status') : '',
    user_id: params.get('user_id') ?? '',
    updated_after: params.get('updated_after') ?? '',
  };
}

/** Whether a session passes the filters (for sessions the feed brings in). */
function matches(s, f) {
  if (f.status && s.status !== f.status) return false;
  if (f.user_id && s.user_id !== f.user_id) return false;
  if (f.updated_after && !(Date.parse(s.updated_at) > Date.parse(f.updated_after))) return false;
  if (f.q) {
    const q = f.q.toLowerCase();
    if (!s.id.toLowerCase().startsWith(q) && !(s.title ?? '').toLowerCase().includes(q)) return false;
  }
  return true;
}

function row(s) {
  const href = `#/sessions/${encodeURIComponent(s.id)}`;
  return h('tr', { 'data-testid': 'session-row', 'data-session-id': s.id, 'data-status': s.status },
    h('td.mono', {}, h('a', { href, title: s.id }, shortId(s.id))),
    h('td.title-cell', {}, s.title ?? h('span.muted', {}, '—')),
    h('td', {}, badge(s.status)),
    h('td.hide-narrow', {}, s.user_id ?? '—'),
    h('td.num.hide-narrow', {}, num(s.total_turns)),
    h('td.num.hide-narrow', {}, num(s.message_count)),
    h('td.num', {}, cost(s.total_cost_usd)),
    h('td.hide-narrow', { title: s.updated_at }, ago(s.updated_at)),
  );
}

/** datetime-local value → ISO string (local time), or ''. */
function isoOf(local) {
  if (!local) return '';
  const t = Date.parse(local);
  return Number.isNaN(t) ? '' : new Date(t).toISOString();
}

function localOf(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export const sessionsPage = {
  id: 'sessions',
  title: 'Sessions',
  mount(root, { params }) {
    const f = filtersFrom(params);
    const controller = new AbortController();
    /** id → { tr, s }: the rows shown, with the session each shows. */
    const rows = new Map();
    let cursor = null;
    let generation = 0;
    /** The list request in flight: a newer one (another keystroke, Load more) aborts it. */
    let listing = null;

    const search = h('input', { id: 'f-q', type: 'search', value: f.q, placeholder: 'id prefix or title', autocomplete: 'off' });
    const status = h('select', { id: 'f-status' }, h('option', { value: '' }, 'any'), STATUSES.map((s) => h('option', { value: s, selected: s === f.status }, s)));
    const user = h('input', { id: 'f-user', type: 'text', value: f.user_id, placeholder: 'user id', autocomplete: 'off' });
    const since = h('input', { id: 'f-since', type: 'datetime-local', value: localOf(f.updated_after) });
    const tbody = h('tbody');
    const more = h('button', { type: 'button', hidden: true, onclick: () => load(false) }, 'Load more');
    const msg = h('p.error', { role: 'alert' });
    const count = h('span.muted', { 'aria-live': 'polite' });
    const newTitle = h('input', { id: 'new-title', type: 'text', placeholder: 'title (optional)', autocomplete: 'off' });

    const filterForm = h('form.filters', { role: 'search', onsubmit: (e) => { e.preventDefault(); apply(); } },
      h('label', {}, 'Search', search),
      h('label', {}, 'Status', status),
      h('label', {}, 'User', user),
      h('label', {}, 'Updated since', since),
      h('button', { type: 'submit' }, 'Apply'),
      h('button', { type: 'button', class: 'ghost', onclick: () => { search.value = ''; status.value = ''; user.value = ''; since.value = ''; apply(); } }, 'Clear'),
    );
    const createForm = h('form.inline', { onsubmit: async (e) => {
      e.preventDefault();
      try {
        const s = await api('POST', '/v1/sessions', newTitle.value.trim() ? { title: newTitle.value.trim() } : {});
        location.hash = `#/sessions/${encodeURIComponent(s.id)}`;
      } catch (err) {
        msg.textContent = err.message;
      }
    } }, h('label.sr-only', { for: 'new-title' }, 'Title of a new session'), newTitle, h('button', { type: 'submit', class: 'primary' }, 'New session'));

    root.append(
      h('div.page-head', {}, h('h1', {}, 'Sessions'), count, createForm),
      filterForm,
      msg,
      h('div.table-wrap', {},
        h('table.list', {},
          h('caption.sr-only', {}, 'Sessions, newest first'),
          h('thead', {}, h('tr', {},
            h('th', { scope: 'col' }, 'id'), h('th', { scope: 'col' }, 'title'), h('th', { scope: 'col' }, 'status'),
            h('th.hide-narrow', { scope: 'col' }, 'user'), h('th.num.hide-narrow', { scope: 'col' }, 'turns'),
            h('th.num.hide-narrow', { scope: 'col' }, 'messages'), h('th.num', { scope: 'col' }, 'cost'),
            h('th.hide-narrow', { scope: 'col' }, 'updated'))),
          tbody)),
      more,
    );

    let typing = null;
    search.addEventListener('input', () => {
      clearTimeout(typing);
      typing = setTimeout(apply, 300);
    });
    status.addEventListener('change', apply);
    since.addEventListener('change', apply);

    function apply() {
      f.q = search.value.trim();
      f.status = status.value;
      f.user_id = user.value.trim();
      f.updated_after = isoOf(since.value);
      // Filters go into the page's address (replaceState: no re-render, focus stays put).
      history.replaceState(null, '', `#/sessions${query(f)}`);
      void load(true);
    }

    const counted = () => {
      count.textContent = `${rows.size}${cursor ? '+' : ''} shown`;
    };
    const showEmpty = () => {
      if (rows.size === 0 && !tbody.querySelector('tr.empty')) tbody.append(h('tr.empty', {}, h('td', { colSpan: 8 }, 'No sessions match.')));
    };

    function put(s, { top = false } = {}) {
      const old = rows.get(s.id);
      const tr = row(s);
      if (old) old.tr.replaceWith(tr);
      else if (top) tbody.prepend(tr);
      else tbody.append(tr);
      rows.set(s.id, { tr, s });
      counted();
    }

    /** Newest first, as the server lists them: created_at, then id, descending. */
    const newer = (x, y) => x.created_at > y.created_at || (x.created_at === y.created_at && x.id > y.id);

    /** Inserts a session that newly matches the filters where the server would list it. */
    function insert(s) {
      for (const tr of tbody.querySelectorAll('tr[data-session-id]')) {
        const other = rows.get(tr.dataset.sessionId)?.s;
        if (other && newer(s, other)) {
          tbody.querySelector('tr.empty')?.remove();
          const mine = row(s);
          tr.before(mine);
          rows.set(s.id, { tr: mine, s });
          counted();
          return;
        }
      }
      // Older than every row shown: it belongs here only if nothing more is left to load.
      if (cursor) return;
      tbody.querySelector('tr.empty')?.remove();
      put(s);
    }

    function drop(id) {
      rows.get(id)?.tr.remove();
      rows.delete(id);
      counted();
      showEmpty();
    }

    async function load(reset) {
      const mine = ++generation;
      listing?.abort();
      const own = (listing = new AbortController());
      const shows = f.q;
      msg.textContent = '';
      try {
        const page = await api('GET', `/v1/sessions${query({ ...f, limit: PAGE, cursor: reset ? null : cursor })}`, undefined, { signal: own.signal });
        if (mine !== generation) return;
        if (reset) {
          clear(tbody);
          rows.clear();
        }
        cursor = page.next_cursor;
        for (const s of page.sessions) put(s);
        more.hidden = !cursor;
        showEmpty();
        counted();
        // The query this list shows, once it shows it (the tests wait for it).
        tbody.dataset.q = shows;
      } catch (err) {
        if (!own.signal.aborted) msg.textContent = err.message;
      } finally {
        if (listing === own) listing = null;
      }
    }

    // Several events for one session in a burst cost one read.
    const pending = new Map();
    function refreshSoon(id, created) {
      if (pending.has(id)) return;
      pending.set(id, setTimeout(async () => {
        pending.delete(id);
        try {
          const s = await api('GET', `/v1/sessions/${encodeURIComponent(id)}`, undefined, { signal: controller.signal });
          // The filters are checked again: a change may take a row out of the list, or put one in.
          if (!matches(s, f)) drop(id);
          else if (rows.has(id)) put(s);
          else if (created) {
            tbody.querySelector('tr.empty')?.remove();
            put(s, { top: true });
          } else insert(s);
        } catch (err) {
          if (err.status === 404 && rows.has(id)) rows.get(id).tr.classList.add('gone');
        }
      }, 150));
    }

    const filtered = () => Boolean(f.q || f.status || f.user_id || f.updated_after);
    const unsubscribe = subscribe((e) => {
      if (!e.session_id) return;
      if (e.type === 'session.created') refreshSoon(e.session_id, true);
      else if (e.type === 'session.deleted') rows.get(e.session_id)?.tr.classList.add('gone');
      else if (rows.has(e.session_id)) refreshSoon(e.session_id, false);
      // A change to a session not shown may make it match the filters now.
      else if (filtered() && e.type.startsWith('session.')) refreshSoon(e.session_id, false);
    });

    void load(true);
    return {
      dispose() {
        controller.abort();
        listing?.abort();
        unsubscribe();
        clearTimeout(typing);
        for (const t of pending.values()) clearTimeout(t);
      },
    };
  },
};
