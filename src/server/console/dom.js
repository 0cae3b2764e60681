// Building DOM without innerHTML (nothing from the API is ever parsed as markup) and the
// formatting every page shares.

/**
 * h('button.primary', { onclick, 'data-testid': 'x' }, 'Text', child) → an element.
 * Keys starting with `on` are listeners; `class`, `for` and `data-*` / `aria-*` are attributes;
 * other keys are properties (value, disabled, hidden, ...). Children: strings, nodes, arrays,
 * null/false (skipped).
 */
export function h(tag, props = {}, ...children) {
  const [name, ...classes] = tag.split('.');
  const el = document.createElement(name || 'div');
  if (classes.length) el.className = classes.join(' ');
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (key === 'class') el.className = [el.className, value].filter(Boolean).join(' ');
    else if (key === 'for' || key.startsWith('data-') || key.startsWith('aria-') || key === 'role' || key === 'href' || key === 'title') {
      el.setAttribute(key, value === true ? '' : String(value));
    } else el[key] = value;
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** An SVG element with attributes. */
export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  for (const child of children) if (child) el.append(child);
  return el;
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A long id in short: its start and its end (UUIDv7s made close together share their start). */
export function shortId(id) {
  return typeof id === 'string' && id.length > 16 ? `${id.slice(0, 8)}…${id.slice(-4)}` : (id ?? '');
}

export function time(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  const today = new Date().toDateString() === d.toDateString();
  return today ? d.toLocaleTimeString() : d.toLocaleString();
}

/** "3 s ago", "5 min ago", ... for recent times; the date otherwise. */
export function ago(iso) {
  if (!iso) return '—';
  const s = Math.round((Date.now() - Date.parse(iso)) / 1000);
  if (s < 5) return 'just now';
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86_400) return `${Math.floor(s / 3600)} h ago`;
  return new Date(iso).toLocaleDateString();
}

export function duration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const m = Math.floor(ms / 60_000);
  return `${m} min ${Math.round((ms % 60_000) / 1000)} s`;
}

export function cost(usd) {
  if (typeof usd !== 'number') return '—';
  return usd === 0 ? '$0' : usd < 0.01 ? `$${usd.toFixed(4)}` : `$${usd.toFixed(2)}`;
}

export function num(n) {
  return typeof n === 'number' ? n.toLocaleString() : '—';
}

/** A status as a coloured badge (colour by class, the word is always there too). */
export function badge(status) {
  return h(`span.badge.s-${String(status).replace(/[^a-z_]/g, '')}`, { 'data-status': status }, status);
}

export function json(value) {
  return JSON.stringify(value, null, 2);
}
