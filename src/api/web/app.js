// gatewatch analyst page. No framework, no build step.
//
// Security rules of this file (see src/api/web.rs):
// * Data from the API is attacker-influenced (paths, user names, summaries).
//   It is only ever inserted as text: el() turns every string child into a
//   text node, and nothing here assigns innerHTML, outerHTML or
//   insertAdjacentHTML, or builds markup from strings.
// * The bearer token lives in sessionStorage (gone when the tab closes) and
//   is sent as an Authorization header; there are no cookies.
'use strict';

const TOKEN_KEY = 'gatewatch.token';
const POLL_MS = 5000;
let pollTimer = null;

function token() { return sessionStorage.getItem(TOKEN_KEY); }

// Builds an element; string children become text nodes, never markup.
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (k === 'class') node.className = v;
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    node.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
  }
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error && body.error.message) || ('HTTP ' + status));
    this.status = status;
  }
}

async function api(method, path, body) {
  const headers = { 'Authorization': 'Bearer ' + token() };
  const init = { method, headers };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch('/api/v1' + path, init);
  const data = res.status === 204 ? null : await res.json().catch(() => null);
  if (res.status === 401) {
    // Revoked or expired: back to the sign-in form (unless already there).
    sessionStorage.removeItem(TOKEN_KEY);
    if (!document.getElementById('login')) route();
  }
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

function fmtTime(t) { return t ? new Date(t).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z') : ''; }

function setStatus(node, err) {
  clear(node);
  if (err) node.appendChild(el('span', { class: 'error' }, err.message || String(err)));
}

// --- Login ---------------------------------------------------------------

function renderLogin(main) {
  const input = el('input', { id: 'token', type: 'password', autocomplete: 'off', placeholder: 'gw_…', size: 48 });
  const msg = el('p', { id: 'login-message' });
  const form = el('form', { class: 'card login', id: 'login', onsubmit: async (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    try {
      await api('GET', '/incidents?limit=1');
      location.hash = '#/';
      route();
    } catch (err) {
      sessionStorage.removeItem(TOKEN_KEY);
      setStatus(msg, err);
    }
  } },
  el('h2', {}, 'Sign in'),
  el('p', { class: 'muted' }, 'Paste an API token (from `gatewatch token create`). It is kept in this tab only.'),
  el('label', {}, 'Token', input),
  el('p', {}, el('button', { type: 'submit', id: 'login-submit' }, 'Sign in')),
  msg);
  main.appendChild(form);
  input.focus();
}

// --- Incident list -------------------------------------------------------

const filters = { status: '', kind: '', min_severity: '', q: '', cidr: '' };

function select(name, options) {
  const s = el('select', { name, onchange: () => { filters[name] = s.value; loadList(); } },
    options.map(([v, label]) => el('option', { value: v, selected: filters[name] === v }, label)));
  return s;
}

function renderList(main) {
  const q = el('input', { name: 'q', value: filters.q, placeholder: 'text in summary' });
  const cidr = el('input', { name: 'cidr', value: filters.cidr, placeholder: '203.0.113.0/24', size: 16 });
  const form = el('form', { class: 'filters', onsubmit: (e) => {
    e.preventDefault(); filters.q = q.value.trim(); filters.cidr = cidr.value.trim(); loadList();
  } },
  el('label', {}, 'Status', select('status', [['', 'any'], ['open', 'open'], ['acknowledged', 'acknowledged'], ['reopened', 'reopened'], ['resolved', 'resolved']])),
  el('label', {}, 'Kind', select('kind', [['', 'any'], ['traffic_spike', 'traffic spike'], ['credential_stuffing', 'credential stuffing'], ['privilege_probing', 'privilege probing']])),
  el('label', {}, 'Severity', select('min_severity', [['', 'any'], ['medium', 'medium+'], ['high', 'high+'], ['critical', 'critical']])),
  el('label', {}, 'Search', q),
  el('label', {}, 'Network', cidr),
  el('button', { type: 'submit' }, 'Filter'));
  main.appendChild(form);
  main.appendChild(el('div', { id: 'list-status' }));
  main.appendChild(el('table', { id: 'incidents' },
    el('thead', {}, el('tr', {}, ['Last seen', 'Severity', 'Kind', 'Client', 'Status', 'Summary'].map((h) => el('th', {}, h)))),
    el('tbody', {})));
  loadList();
  pollTimer = setInterval(loadList, POLL_MS);
}

// Each list request is numbered: a reply to a request that a newer one
// (another filter, the next poll) has replaced is dropped, so the rows
// always match the filters on screen.
let listRequest = 0;

async function loadList() {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(filters)) if (v) params.set(k, v);
  params.set('limit', '100');
  const status = document.getElementById('list-status');
  const tbody = document.querySelector('#incidents tbody');
  if (!tbody) return;
  const mine = ++listRequest;
  try {
    const page = await api('GET', '/incidents?' + params.toString());
    if (mine !== listRequest) return;
    setStatus(status, null);
    clear(tbody);
    if (page.incidents.length === 0) {
      tbody.appendChild(el('tr', {}, el('td', { colspan: 6, class: 'muted' }, 'No incidents match.')));
    }
    for (const i of page.incidents) {
      tbody.appendChild(el('tr', { class: 'row', 'data-id': i.id, onclick: () => { location.hash = '#/incidents/' + i.id; } },
        el('td', {}, fmtTime(i.last_seen)),
        el('td', {}, el('span', { class: 'sev sev-' + i.severity }, i.severity)),
        el('td', {}, i.kind),
        el('td', {}, i.client),
        el('td', {}, el('span', { class: 'status' }, i.status)),
        el('td', {}, i.summary)));
    }
  } catch (err) { if (mine === listRequest) setStatus(status, err); }
}

// --- Incident page -------------------------------------------------------

function chart(traffic) {
  const W = 900, H = 220, L = 44, R = 10, T = 10, B = 26;
  const root = svg('svg', { class: 'chart', id: 'traffic-chart', viewBox: `0 0 ${W} ${H}`, role: 'img' });
  const from = Date.parse(traffic.from), to = Date.parse(traffic.to);
  const pts = traffic.points.map((p) => [Date.parse(p.minute), p.events]);
  const base = traffic.baseline;
  let max = Math.max(1, ...pts.map((p) => p[1]));
  if (base) max = Math.max(max, base.mean_per_minute + 2 * base.stddev_per_minute);
  const x = (t) => L + (W - L - R) * (t - from) / Math.max(1, to - from);
  const y = (v) => H - B - (H - T - B) * v / max;
  root.appendChild(svg('line', { class: 'axis', x1: L, y1: H - B, x2: W - R, y2: H - B }));
  root.appendChild(svg('line', { class: 'axis', x1: L, y1: T, x2: L, y2: H - B }));
  const label = (text, attrs) => { const t = svg('text', attrs); t.textContent = text; root.appendChild(t); };
  label(String(Math.round(max)), { x: 2, y: T + 10 });
  label('0', { x: 2, y: H - B });
  label(fmtTime(traffic.from), { x: L, y: H - 6 });
  label(fmtTime(traffic.to), { x: W - R - 150, y: H - 6 });
  if (base) {
    const lo = Math.max(0, base.mean_per_minute - base.stddev_per_minute);
    const hi = base.mean_per_minute + base.stddev_per_minute;
    root.appendChild(svg('rect', { class: 'band', x: L, y: y(hi), width: W - L - R, height: Math.max(0, y(lo) - y(hi)) }));
    root.appendChild(svg('line', { class: 'baseline', x1: L, x2: W - R, y1: y(base.mean_per_minute), y2: y(base.mean_per_minute) }));
  }
  if (pts.length > 0) {
    root.appendChild(svg('polyline', { class: 'observed', points: pts.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(' ') }));
  } else {
    label('No per-minute activity recorded for this client.', { x: L + 10, y: T + 30 });
  }
  return root;
}

// One timeline entry as a line of text: the action, the status move, the note.
function describe(t) {
  const d = t.details || {};
  let text = t.action;
  if (t.action === 'status_changed' && d.from) text += ` (${d.from} → ${d.status})`;
  if (t.action === 'assigned') text += d.assignee ? ` to ${d.assignee}` : ' (released)';
  if (d.note) text += ': ' + d.note;
  return text;
}

function field(name, value) { return el('div', {}, el('span', {}, name), value === null || value === undefined ? '—' : String(value)); }

async function renderIncident(main, id) {
  const status = el('div', { id: 'incident-status' });
  main.appendChild(el('p', {}, el('a', { href: '#/' }, '← all incidents')));
  main.appendChild(status);
  let d;
  try { d = await api('GET', '/incidents/' + encodeURIComponent(id)); } catch (err) { setStatus(status, err); return; }
  const i = d.incident;
  const act = (what) => async () => {
    try { await api('POST', `/incidents/${i.id}/${what}`, {}); clear(main); renderIncident(main, id); }
    catch (err) { setStatus(status, err); }
  };
  const comment = el('textarea', { id: 'comment-body', rows: 3, cols: 60, maxlength: 10000 });
  main.appendChild(el('section', { class: 'card', id: 'incident' },
    el('h2', { id: 'incident-summary' }, i.summary),
    el('div', { class: 'grid' },
      field('Status', i.status), field('Severity', i.severity), field('Kind', i.kind), field('Technique', i.technique),
      field('Client', i.client), field('Events', i.events), field('First seen', fmtTime(i.first_seen)),
      field('Last seen', fmtTime(i.last_seen)), field('Assignee', i.assignee)),
    el('p', { class: 'actions' },
      el('button', { id: 'ack', type: 'button', onclick: act('ack'), disabled: !(i.status === 'open' || i.status === 'reopened') }, 'Acknowledge'),
      el('button', { id: 'resolve', type: 'button', onclick: act('resolve'), disabled: i.status === 'resolved' }, 'Resolve'),
      el('button', { id: 'reopen', type: 'button', class: 'secondary', onclick: act('reopen'), disabled: i.status !== 'resolved' }, 'Reopen'))));
  main.appendChild(el('section', { class: 'card' }, el('h2', {}, 'Traffic against baseline (requests per minute)'), chart(d.traffic),
    d.traffic.baseline ? el('p', { class: 'muted' }, `Baseline ${d.traffic.baseline.mean_per_minute.toFixed(1)} ± ${d.traffic.baseline.stddev_per_minute.toFixed(1)} per minute (dashed).`) : null));
  const s = d.samples;
  main.appendChild(el('section', { class: 'card', id: 'samples' }, el('h2', {}, 'Samples'),
    el('h3', {}, 'Paths'), el('ul', { class: 'plain', id: 'sample-paths' }, s.paths.length ? s.paths.map((p) => el('li', {}, p)) : el('li', { class: 'muted' }, 'none in the evidence')),
    s.users.length ? [el('h3', {}, 'Accounts'), el('ul', { class: 'plain' }, s.users.map((u) => el('li', {}, u)))] : null,
    s.sources.length ? [el('h3', {}, 'Sources'), el('ul', { class: 'plain' }, s.sources.map((u) => el('li', {}, u)))] : null));
  main.appendChild(el('section', { class: 'card' }, el('h2', {}, 'Evidence'), el('pre', { id: 'evidence' }, JSON.stringify(i.evidence, null, 2))));
  const history = [
    ...d.timeline.map((t) => ({ at: t.at, who: t.actor, what: describe(t) })),
    ...d.comments.map((c) => ({ at: c.at, who: c.actor, what: 'commented: ' + c.body })),
  ].sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
  main.appendChild(el('section', { class: 'card' }, el('h2', {}, 'History'),
    el('ul', { class: 'plain', id: 'timeline' }, history.map((h) => el('li', {}, el('span', { class: 'muted' }, fmtTime(h.at) + ' '), h.who + ' — ' + h.what))),
    el('form', { id: 'comment-form', onsubmit: async (e) => {
      e.preventDefault();
      try { await api('POST', `/incidents/${i.id}/comments`, { body: comment.value }); clear(main); renderIncident(main, id); }
      catch (err) { setStatus(status, err); }
    } }, el('label', {}, 'Comment', comment), el('p', {}, el('button', { type: 'submit' }, 'Add comment')))));
}

// --- Routing -------------------------------------------------------------

function route() {
  if (pollTimer) { clearInterval(pollTimer); pollTimer = null; }
  const main = document.getElementById('main');
  clear(main);
  const logout = document.getElementById('logout');
  if (!token()) { logout.hidden = true; renderLogin(main); return; }
  logout.hidden = false;
  const m = location.hash.match(/^#\/incidents\/([0-9a-fA-F-]{36})$/);
  if (m) renderIncident(main, m[1]); else renderList(main);
}

document.addEventListener('DOMContentLoaded', () => {
  document.getElementById('logout').addEventListener('click', () => { sessionStorage.removeItem(TOKEN_KEY); route(); });
  window.addEventListener('hashchange', route);
  route();
});
