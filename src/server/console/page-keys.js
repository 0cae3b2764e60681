// Keys (admin scope): list, create (the key is shown once, here, and kept nowhere), revoke.
import { api, query } from './api.js';
import { clear, h, time } from './dom.js';

const SCOPES = ['read', 'write', 'runs', 'admin'];

export const keysPage = {
  id: 'keys',
  title: 'Keys',
  mount(root) {
    const controller = new AbortController();
    const msg = h('p.error', { role: 'alert' });
    const tbody = h('tbody');
    const created = h('div.created', { role: 'status', 'aria-live': 'polite' });
    const tenant = h('input', { id: 'k-tenant', type: 'text', required: true, value: 'default', autocomplete: 'off' });
    const name = h('input', { id: 'k-name', type: 'text', placeholder: 'what it is for', autocomplete: 'off' });
    const scopeBoxes = SCOPES.map((s) => h('input', { type: 'checkbox', value: s, id: `k-scope-${s}`, checked: s !== 'admin' }));
    const filter = h('input', { id: 'k-filter', type: 'text', placeholder: 'tenant', autocomplete: 'off' });

    root.append(
      h('div.page-head', {}, h('h1', {}, 'API keys')),
      msg,
      h('section.panel', { 'aria-labelledby': 'k-new' },
        h('h2', { id: 'k-new' }, 'Create a key'),
        h('form.filters', { onsubmit: (e) => { e.preventDefault(); void create(); } },
          h('label', {}, 'Tenant', tenant),
          h('label', {}, 'Name', name),
          h('fieldset.scopes', {}, h('legend', {}, 'Scopes'), scopeBoxes.map((b) => h('label.check', { for: b.id }, b, ` ${b.value}`))),
          h('button.primary', { type: 'submit' }, 'Create')),
        created),
      h('section.panel', { 'aria-labelledby': 'k-list' },
        h('div.page-head', {}, h('h2', { id: 'k-list' }, 'Keys'),
          h('form.inline', { onsubmit: (e) => { e.preventDefault(); void load(); } },
            h('label', {}, 'Tenant ', filter), h('button', { type: 'submit' }, 'Show'))),
        h('div.table-wrap', {},
          h('table.list', {},
            h('thead', {}, h('tr', {},
              h('th', { scope: 'col' }, 'name'), h('th', { scope: 'col' }, 'prefix'), h('th', { scope: 'col' }, 'tenant'),
              h('th', { scope: 'col' }, 'scopes'), h('th.hide-narrow', { scope: 'col' }, 'created'),
              h('th', { scope: 'col' }, 'state'), h('th', { scope: 'col' }, h('span.sr-only', {}, 'actions')))),
            tbody))),
    );

    async function load() {
      msg.textContent = '';
      try {
        const { keys } = await api('GET', `/v1/admin/keys${query({ tenant: filter.value.trim() })}`, undefined, { signal: controller.signal });
        clear(tbody, keys.length === 0 ? h('tr', {}, h('td', { colSpan: 7 }, 'No keys.')) : keys.map((k) => h('tr', { 'data-key-id': k.id },
          h('td', {}, k.name ?? h('span.muted', {}, '—')),
          h('td.mono', {}, k.prefix),
          h('td', {}, k.tenant),
          h('td', {}, k.scopes.join(', ')),
          h('td.hide-narrow', {}, time(k.created_at)),
          h('td', {}, k.revoked_at ? h('span.badge.s-terminated', {}, `revoked ${time(k.revoked_at)}`) : h('span.badge.s-idle', {}, 'active')),
          h('td', {}, k.revoked_at ? null : h('button.danger', { type: 'button', onclick: () => revoke(k) }, 'Revoke')))));
      } catch (err) {
        if (controller.signal.aborted) return;
        msg.textContent = err.status === 403 ? 'Managing keys needs a key with the admin scope.' : err.message;
      }
    }

    async function create() {
      msg.textContent = '';
      const scopes = scopeBoxes.filter((b) => b.checked).map((b) => b.value);
      try {
        const k = await api('POST', '/v1/admin/keys', { tenant: tenant.value.trim(), scopes, name: name.value.trim() || null });
        const value = h('input.mono.secret', { type: 'text', readOnly: true, value: k.key, 'aria-label': 'The new key' });
        clear(created,
          h('p', {}, h('strong', {}, 'Copy the key now: it is shown only this once.'), ` ${k.name ?? ''} (${k.tenant}: ${k.scopes.join(', ')})`),
          h('div.row', {}, value,
            h('button', { type: 'button', onclick: async () => {
              value.select();
              try {
                await navigator.clipboard.writeText(k.key);
              } catch {
                document.execCommand?.('copy');
              }
            } }, 'Copy'),
            h('button.ghost', { type: 'button', onclick: () => clear(created) }, 'Done')));
        value.focus();
        value.select();
        name.value = '';
        await load();
      } catch (err) {
        msg.textContent = err.status === 403 ? 'Creating keys needs a key with the admin scope.' : err.message;
      }
    }

    async function revoke(k) {
      if (!window.confirm(`Revoke the key ${k.prefix} (${k.name ?? 'unnamed'})? Requests with it fail from now on.`)) return;
      try {
        await api('DELETE', `/v1/admin/keys/${encodeURIComponent(k.id)}`);
        await load();
      } catch (err) {
        msg.textContent = err.message;
      }
    }

    void load();
    return {
      dispose() {
        controller.abort();
        clear(created);
      },
    };
  },
};
