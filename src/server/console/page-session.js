// One session: its fields, counters and metadata; run controls (start, send input, interrupt);
// the output of a run, streamed live over SSE and resumed by itself after a cut; its runs as a
// timeline; the full history, paged, with tool calls and results folded. Fork and terminate.
// Kept live from the event feed.
import { api, follow, query } from './api.js';
import { ago, badge, clear, cost, duration, h, json, num, shortId, time } from './dom.js';
import { subscribe } from './feed.js';

const IF_BUSY = ['reject', 'enqueue', 'interrupt', 'steer', 'latest', 'merge'];
const ENDED = ['terminated', 'expired', 'failed'];
const ITEMS_PAGE = 50;
const RUNS_PAGE = 20;

/** What the user typed: JSON when it parses as JSON, the text otherwise. */
function parseInput(text) {
  const t = text.trim();
  if (!t) return null;
  if (/^[[{"]/.test(t) || /^(true|false|null|-?\d)/.test(t)) {
    try {
      return JSON.parse(t);
    } catch {
      return text;
    }
  }
  return text;
}

function isTool(item) {
  const s = `${item.role} ${item.type}`.toLowerCase();
  if (s.includes('tool') || s.includes('function')) return true;
  const c = item.content;
  return Array.isArray(c?.parts ?? c) && (c.parts ?? c).some((p) => p && typeof p === 'object' && /tool|function/i.test(String(p.type ?? '')));
}

/** The readable text of an item's content, when it has one. */
function textOf(content) {
  if (typeof content === 'string') return content;
  if (content && typeof content === 'object') {
    if (typeof content.text === 'string') return content.text;
    if (typeof content.content === 'string') return content.content;
    const parts = Array.isArray(content) ? content : Array.isArray(content.parts) ? content.parts : Array.isArray(content.content) ? content.content : null;
    if (parts && parts.every((p) => p && typeof p === 'object' && (p.type === 'text' || typeof p.text === 'string'))) {
      return parts.map((p) => p.text ?? '').join('');
    }
  }
  return null;
}

function itemView(item) {
  const head = h('div.item-head', {},
    h('span.seq', {}, `#${item.seq}`), ' ',
    // Items of some frameworks (a function call, a reasoning step) have no role.
    item.role === null ? null : h('strong', {}, item.role), ' ',
    h('span.muted', {}, item.type), ' ',
    h('time.muted', { title: item.created_at }, time(item.created_at)));
  const text = textOf(item.content);
  if (isTool(item)) {
    return h('li.item.tool', { 'data-role': item.role ?? '' },
      h('details', {}, h('summary', {}, head, ' ', h('span.muted', {}, summaryOf(item.content))), h('pre', {}, json(item.content))));
  }
  return h(`li.item.role-${String(item.role ?? 'none').replace(/[^a-z]/g, '')}`, { 'data-role': item.role ?? '' },
    head,
    text !== null ? h('div.item-text', {}, text) : h('details', { open: true }, h('summary', {}, 'content'), h('pre', {}, json(item.content))));
}

function summaryOf(content) {
  const s = JSON.stringify(content) ?? '';
  return s.length > 80 ? `${s.slice(0, 80)}…` : s;
}

function field(label, value) {
  return [h('dt', {}, label), h('dd', {}, value ?? h('span.muted', {}, '—'))];
}

function runDuration(r) {
  if (!r.started_at) return null;
  return (r.ended_at ? Date.parse(r.ended_at) : Date.now()) - Date.parse(r.started_at);
}

export const sessionPage = {
  id: 'session',
  title: 'Session',
  mount(root, { parts }) {
    const id = parts[1];
    const base = `/v1/sessions/${encodeURIComponent(id)}`;
    const controller = new AbortController();
    const { signal } = controller;
    let session = null;
    let runs = [];
    let runsCursor = null;
    /** The output shown: { runId, follow (switch to the next run that starts), controller }. */
    let output = null;

    const msg = h('p.error', { role: 'alert' });
    const headEl = h('div.page-head');
    const fieldsEl = h('dl.fields');
    const countersEl = h('div.counters');
    const metaEl = h('pre.meta');
    const runsEl = h('ol.timeline', { 'aria-label': 'Runs, newest first' });
    const moreRuns = h('button', { type: 'button', hidden: true, onclick: () => loadRuns(false) }, 'Older runs');
    const itemsEl = h('ol.items');
    const moreItems = h('button', { type: 'button', hidden: true, onclick: () => loadItems() }, 'Load more history');
    const itemsCount = h('span.muted');

    // Run controls.
    const runInput = h('textarea', { id: 'run-input', rows: 2, placeholder: 'Input for the run: text, or JSON (Ctrl+Enter starts it)' });
    runInput.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        void start();
      }
    });
    const ifBusy = h('select', { id: 'if-busy' }, IF_BUSY.map((v) => h('option', { value: v, selected: v === 'reject' }, v)));
    const startBtn = h('button.primary', { type: 'submit', 'data-testid': 'start-run' }, 'Start run');
    const inputText = h('input', { id: 'input-text', type: 'text', placeholder: 'Input for the running run', autocomplete: 'off', 'data-testid': 'input-text' });
    const inputSend = h('button', { type: 'submit', 'data-testid': 'input-send' }, 'Send input');
    const interruptBtn = h('button.danger', { type: 'button', 'data-testid': 'interrupt', onclick: interrupt }, 'Interrupt');
    const runMsg = h('p.muted', { role: 'status', 'aria-live': 'polite' });

    // Output.
    const outTitle = h('span');
    const outState = h('span.stream-state', { role: 'status' });
    const outText = h('div.output', { 'data-testid': 'run-output', 'aria-live': 'polite', 'aria-label': 'Run output', tabIndex: 0 });

    const forkBtn = h('button', { type: 'button', onclick: fork }, 'Fork');
    const terminateBtn = h('button.danger', { type: 'button', onclick: terminate }, 'Terminate');

    root.append(
      h('p.crumbs', {}, h('a', { href: '#/sessions' }, '← Sessions')),
      headEl,
      msg,
      h('div.session-grid', {},
        h('div.col', {},
          h('section.panel.run-panel', { 'aria-labelledby': 'run-h' },
            h('h2', { id: 'run-h' }, 'Run'),
            h('form.run-start', { onsubmit: (e) => { e.preventDefault(); void start(); } },
              h('label', { for: 'run-input' }, 'Input'), runInput,
              h('div.row', {}, h('label', { for: 'if-busy' }, 'If busy'), ifBusy, startBtn, interruptBtn)),
            h('form.run-input', { onsubmit: (e) => { e.preventDefault(); void sendInput(); } },
              h('label', { for: 'input-text' }, 'Send to the running run'),
              h('div.row', {}, inputText, inputSend)),
            runMsg,
            h('div.output-head', {}, outTitle, outState),
            outText),
          h('section.panel', { 'aria-labelledby': 'runs-h' },
            h('h2', { id: 'runs-h' }, 'Runs'), runsEl, moreRuns)),
        h('section.panel', { 'aria-labelledby': 'fields-h' },
          h('h2', { id: 'fields-h' }, 'Session'), fieldsEl,
          h('h3', {}, 'Counters'), countersEl,
          h('h3', {}, 'Metadata'), metaEl),
        h('section.panel.history', { 'aria-labelledby': 'items-h' },
          h('h2', { id: 'items-h' }, 'History ', itemsCount), itemsEl, moreItems)),
    );

    function renderSession() {
      const s = session;
      document.title = `${s.title || shortId(s.id)} · agent-sessions`;
      clear(headEl,
        h('h1', {}, s.title || h('span.mono', {}, s.id)),
        badge(s.status),
        h('span.actions', {}, forkBtn, terminateBtn));
      terminateBtn.disabled = ENDED.includes(s.status);
      startBtn.disabled = ENDED.includes(s.status);
      clear(fieldsEl,
        field('id', h('span.mono', {}, s.id)),
        field('status', s.status),
        field('user', s.user_id), field('org', s.org_id), field('model', s.model),
        field('parent', s.parent_session_id ? h('a', { href: `#/sessions/${encodeURIComponent(s.parent_session_id)}` }, shortId(s.parent_session_id)) : null),
        field('version', String(s.version)), field('revision', String(s.revision)),
        field('created', time(s.created_at)), field('updated', time(s.updated_at)),
        field('last active', ago(s.last_active_at)), field('expires', s.expires_at ? time(s.expires_at) : null),
        field('idle timeout', s.idle_timeout_seconds ? `${s.idle_timeout_seconds} s` : null),
        field('ended', s.ended_at ? `${time(s.ended_at)} (${s.end_reason ?? '—'})` : null),
        field('workspace', s.workspace_path), field('MCP clients', s.mcp_client_ids.length ? s.mcp_client_ids.join(', ') : null),
        s.system_prompt ? field('system prompt', h('details', {}, h('summary', {}, `${s.system_prompt.length} characters`), h('pre', {}, s.system_prompt))) : null);
      clear(countersEl,
        [['turns', num(s.total_turns)], ['messages', num(s.message_count)], ['cost', cost(s.total_cost_usd)],
          ['input tokens', num(s.input_tokens)], ['output tokens', num(s.output_tokens)]]
          .map(([label, value]) => h('div.counter', {}, h('div.muted.small', {}, label), h('strong', {}, value))));
      metaEl.textContent = json(s.metadata);
    }

    async function loadSession() {
      try {
        session = await api('GET', base, undefined, { signal });
        renderSession();
      } catch (err) {
        if (signal.aborted) return;
        msg.textContent = err.status === 404 ? 'No such session (or not visible with this key).' : err.message;
      }
    }

    function renderRuns() {
      const longest = Math.max(1, ...runs.map((r) => runDuration(r) ?? 0));
      clear(runsEl, runs.length === 0 ? h('li.muted', {}, 'No runs yet.') : runs.map((r) => {
        const d = runDuration(r);
        const bar = h('span.run-bar', { 'data-status': r.status });
        bar.style.width = `${Math.max(2, ((d ?? 0) / longest) * 100)}%`;
        const selected = output?.runId === r.id;
        return h('li.run', { 'data-run-id': r.id, 'data-status': r.status, class: selected ? 'selected' : '' },
          h('button.link', { type: 'button', onclick: () => showRun(r, { follow: r.id === runs[0]?.id }), 'aria-pressed': String(selected), title: 'Show this run’s output' },
            h('span.mono', {}, shortId(r.id)), ' ', badge(r.status), ' ',
            h('span', {}, duration(d)), ' ',
            h('span.muted', {}, r.started_at ? time(r.started_at) : `queued ${time(r.created_at)}`)),
          h('div.run-track', {}, bar),
          r.interrupt_requested_at ? h('div.muted', {}, `interrupt requested ${time(r.interrupt_requested_at)}`) : null,
          r.error || (r.end_reason && r.end_reason !== r.status)
            ? h('div', { class: r.error ? 'error' : 'muted' }, [r.end_reason !== r.status ? r.end_reason : null, r.error].filter(Boolean).join(': '))
            : null,
          h('div.muted.small', {}, `owner ${r.owner ?? '—'}`));
      }));
    }

    async function loadRuns(reset) {
      try {
        const page = await api('GET', `${base}/runs${query({ limit: RUNS_PAGE, cursor: reset ? null : runsCursor })}`, undefined, { signal });
        runs = reset ? page.runs : [...runs, ...page.runs];
        runsCursor = page.next_cursor;
        moreRuns.hidden = !runsCursor;
        renderRuns();
        return runs;
      } catch (err) {
        if (!signal.aborted) msg.textContent = err.message;
        return runs;
      }
    }

    // History: oldest first, a page at a time. The cursor of the last page is kept so items
    // added later are read from there (new items land on the last page).
    let items = [];
    let itemsCursor = null;
    let lastPage = { cursor: null, start: 0 };
    let itemsDone = false;
    async function loadItems(fromLastPage = false) {
      try {
        const from = fromLastPage ? lastPage : { cursor: itemsCursor, start: items.length };
        const page = await api('GET', `${base}/items${query({ limit: ITEMS_PAGE, cursor: from.cursor })}`, undefined, { signal });
        items = [...items.slice(0, from.start), ...page.items];
        lastPage = from;
        itemsCursor = page.next_cursor;
        itemsDone = !itemsCursor;
        if (itemsCursor) lastPage = { cursor: itemsCursor, start: items.length };
        clear(itemsEl, items.length === 0 ? h('li.muted', {}, 'No items.') : items.map(itemView));
        itemsCount.textContent = `(${items.length}${itemsDone ? '' : '+'})`;
        moreItems.hidden = itemsDone;
      } catch (err) {
        if (!signal.aborted) msg.textContent = err.message;
      }
    }

    /** Items replaced in place (item.updated): re-read the last page when they are on it, else from the start. */
    function itemsReplaced(seqs) {
      const shown = items.filter((i) => seqs.includes(i.seq));
      if (shown.length === 0) return;
      const lastPageFrom = itemsDone ? (items[lastPage.start]?.seq ?? Infinity) : Infinity;
      if (shown.every((i) => i.seq >= lastPageFrom)) return loadItems(true);
      items = [];
      itemsCursor = null;
      lastPage = { cursor: null, start: 0 };
      return loadItems();
    }

    function text(type, data) {
      if (type === 'text' && data && typeof data.text === 'string') return h('span.t-text', {}, data.text);
      const label = h('span.t-label', {}, type);
      const body = data === null || data === undefined ? '' : typeof data === 'string' ? data : JSON.stringify(data);
      return h(`div.t-event.t-${type.replace(/[^a-z_]/g, '')}`, { 'data-type': type }, label, ' ', body);
    }

    /**
     * Shows a run's output from its first event, live until its terminal event (without a run:
     * the session's current or next one). With `follow`, the next run that starts is shown next.
     */
    function showRun(run, { follow: following }) {
      output?.controller.abort();
      const c = new AbortController();
      signal.addEventListener('abort', () => c.abort(), { once: true });
      output = { runId: run?.id ?? null, follow: following, controller: c };
      clear(outText);
      outText.dataset.runId = run?.id ?? '';
      outText.dataset.state = 'connecting';
      delete outText.dataset.end;
      outTitle.textContent = run ? `Output of run ${shortId(run.id)}` : 'Output';
      renderRuns();
      const after = typeof run?.start_seq === 'number' ? run.start_seq - 1 : null;
      const path = `${base}/stream${after !== null ? query({ after }) : ''}`;
      let lastText = null;
      void follow(path, {
        signal: c.signal,
        onState: (state, detail) => {
          outText.dataset.state = state;
          outState.textContent = state === 'live' ? '● live' : state === 'reconnecting' ? `reconnecting…${detail ? ` (${detail})` : ''}` : state === 'ended' ? 'ended' : state === 'error' ? `error: ${detail}` : state;
          outState.dataset.state = state;
        },
        onEvent: ({ type, data }) => {
          const e = data && typeof data === 'object' ? data : { type, data };
          if (output?.runId === null && e.run_id) {
            output.runId = e.run_id;
            outText.dataset.runId = e.run_id;
            outTitle.textContent = `Output of run ${shortId(e.run_id)}`;
          }
          const node = text(type, e.data);
          // Consecutive text pieces flow as one paragraph.
          if (node.classList.contains('t-text')) {
            if (!lastText) {
              lastText = h('p.t-para');
              outText.append(lastText);
            }
            lastText.append(node);
          } else {
            lastText = null;
            outText.append(node);
          }
          outText.scrollTop = outText.scrollHeight;
          if (type === 'done' || type === 'error') {
            outText.dataset.end = e.data?.status ?? type;
            void loadRuns(true);
            return true;
          }
          return false;
        },
      });
    }

    async function start() {
      runMsg.textContent = '';
      try {
        const run = await api('POST', `${base}/runs`, { input: parseInput(runInput.value), if_busy: ifBusy.value });
        runMsg.textContent = `Run ${shortId(run.id)} ${run.status} (${run.decision ?? run.status}).`;
        await loadRuns(true);
        // A queued run is shown when it starts (run.started), after the one going now.
        if (run.status === 'running') showRun(run, { follow: true });
      } catch (err) {
        runMsg.textContent = `Not started: ${err.message}`;
      }
    }

    async function sendInput() {
      const value = inputText.value;
      if (!value.trim()) return;
      try {
        const sent = await api('POST', `${base}/input`, { input: parseInput(value) });
        runMsg.textContent = `Input sent to run ${shortId(sent.run_id)}.`;
        inputText.value = '';
      } catch (err) {
        runMsg.textContent = `Not sent: ${err.message}`;
      }
    }

    async function interrupt() {
      try {
        const run = await api('POST', `${base}/interrupt`, null);
        runMsg.textContent = `Interrupt sent to run ${shortId(run.id)}.`;
      } catch (err) {
        runMsg.textContent = `Not interrupted: ${err.message}`;
      }
    }

    async function fork() {
      try {
        const child = await api('POST', `${base}/fork`, session?.title ? { title: `${session.title} (fork)` } : {});
        location.hash = `#/sessions/${encodeURIComponent(child.id)}`;
      } catch (err) {
        msg.textContent = `Not forked: ${err.message}`;
      }
    }

    async function terminate() {
      if (!window.confirm('Terminate this session? It takes no more writes.')) return;
      try {
        session = await api('DELETE', `${base}${query({ reason: 'console' })}`);
        renderSession();
      } catch (err) {
        msg.textContent = `Not terminated: ${err.message}`;
      }
    }

    // Live: the session's events refresh what they touch (a burst costs one read each).
    const timers = {};
    const soon = (name, fn) => {
      if (timers[name]) return;
      timers[name] = setTimeout(() => {
        timers[name] = null;
        void fn();
      }, 150);
    };
    const unsubscribe = subscribe((e) => {
      if (e.session_id !== id) return;
      if (e.type.startsWith('session.')) soon('session', loadSession);
      if (e.type.startsWith('run.')) {
        soon('runs', () => loadRuns(true));
        soon('session', loadSession);
        // A new run starts: follow it when following the live output and the shown one is over.
        if (e.type === 'run.started' && output?.follow && (output.runId === null || outText.dataset.end)) {
          const runId = e.data?.run_id ?? e.data?.id;
          showRun(runId ? { id: runId, start_seq: null } : null, { follow: true });
        }
      }
      if (e.type === 'item.added' && itemsDone) soon('items', () => loadItems(true));
      if (e.type === 'item.updated' && Array.isArray(e.data?.seqs)) soon('items-replaced', () => itemsReplaced(e.data.seqs));
      if (e.type === 'item.added' || e.type === 'item.updated') soon('session', loadSession);
    });

    // A running run's duration grows; not while a run's button has the focus (it would lose it).
    const tick = setInterval(() => {
      if (runs.some((r) => r.status === 'running') && !runsEl.contains(document.activeElement)) renderRuns();
    }, 1000);

    void (async () => {
      await loadSession();
      if (!session) return;
      const list = await loadRuns(true);
      const latest = list[0];
      showRun(latest ?? null, { follow: true });
      await loadItems();
    })();

    return {
      dispose() {
        controller.abort();
        unsubscribe();
        clearInterval(tick);
        for (const t of Object.values(timers)) clearTimeout(t);
      },
    };
  },
};
