// The console's entry point: the key prompt, the page router (#/..., so a reload keeps the
// page; nothing secret is ever in the URL) and the shared event feed.
import { forgetKey, getKey, onKeyNeeded, setKey } from './api.js';
import { onFeedState, startFeed, stopFeed } from './feed.js';
import { eventsPage } from './page-events.js';
import { keysPage } from './page-keys.js';
import { overviewPage } from './page-overview.js';
import { sessionPage } from './page-session.js';
import { sessionsPage } from './page-sessions.js';

const $ = (id) => document.getElementById(id);
const main = $('main');
let current = null;

// The console before this one kept the key in localStorage: make sure none is left there.
try {
  localStorage.removeItem('agent-sessions-key');
} catch {
  // Storage disabled: nothing to remove.
}

/** Parses `#/sessions/abc?status=idle` into { parts: ['sessions', 'abc'], params }. */
function route() {
  const hash = location.hash.replace(/^#\/?/, '');
  const [path, search = ''] = hash.split('?');
  let parts;
  try {
    parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  } catch {
    // A malformed escape (`#/sessions/%`): no page has that address.
    parts = null;
  }
  return { parts, params: new URLSearchParams(search) };
}

function pageFor({ parts }) {
  if (!parts) return null;
  switch (parts[0]) {
    case undefined:
      return overviewPage;
    case 'sessions':
      return parts[1] ? sessionPage : sessionsPage;
    case 'events':
      return eventsPage;
    case 'keys':
      return keysPage;
    default:
      return null;
  }
}

function render() {
  current?.dispose?.();
  current = null;
  const r = route();
  const page = pageFor(r);
  for (const a of document.querySelectorAll('nav a')) {
    const active = a.dataset.page === (page === sessionPage ? 'sessions' : page?.id);
    if (active) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  main.replaceChildren();
  if (!getKey()) return;
  if (!page) {
    main.append(Object.assign(document.createElement('p'), { textContent: 'No such page.' }));
    return;
  }
  document.title = `${page.title} · agent-sessions`;
  current = page.mount(main, r);
}

function askForKey(reason) {
  const dialog = $('key-dialog');
  $('key-error').textContent = reason === 'refused' ? 'The server refused this key (401). Enter a valid key.' : '';
  $('forget-key').hidden = !getKey();
  if (reason === 'refused') {
    forgetKey();
    stopFeed();
    // Nothing of the refused key's stays under the dialog: the page's data and its streams go;
    // saving a new key renders the page again.
    current?.dispose?.();
    current = null;
    main.replaceChildren();
  }
  if (!dialog.open) dialog.showModal();
  $('key-input').focus();
}

$('key-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const key = $('key-input').value.trim();
  if (!key) return;
  setKey(key);
  $('key-input').value = '';
  $('key-dialog').close();
  $('forget-key').hidden = false;
  startFeed();
  render();
});
// Escape must not leave the console without a key.
$('key-dialog').addEventListener('cancel', (e) => {
  if (!getKey()) e.preventDefault();
});
$('forget-key').addEventListener('click', () => {
  forgetKey();
  stopFeed();
  render();
  askForKey('missing');
});

const feedLabel = { idle: 'offline', connecting: 'connecting…', live: 'live', reconnecting: 'reconnecting…', error: 'feed error', ended: 'offline' };
onFeedState((state) => {
  const el = $('feed-state');
  el.textContent = feedLabel[state] ?? state;
  el.dataset.state = state;
});

onKeyNeeded(askForKey);
window.addEventListener('hashchange', () => {
  render();
  main.focus({ preventScroll: true });
});

if (getKey()) {
  $('forget-key').hidden = false;
  startFeed();
  render();
} else {
  askForKey('missing');
}
