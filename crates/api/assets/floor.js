// The floor app (ADR 0038): vanilla ES modules, no build step, everything from this origin.
//
//   1. sign-in    a bearer token in sessionStorage; GET /api/v1/auth/me gives the role and
//                 its permissions, the OpenAPI document the endpoints this server has.
//   2. gating     every write control names the permission (data-perm) and the endpoint
//                 (data-endpoint) it needs; it is hidden when either is missing. The
//                 server enforces the same rules; the UI only mirrors them.
//   3. views      operator (one machine), supervisor, admin; rendered from GETs, which
//                 fall back to the last answer kept in localStorage when offline.
//   4. commands   every write goes through the outbox (outbox.js): IndexedDB first, then
//                 sent with its Idempotency-Key; offline it stays "pending" and is sent
//                 when the connection returns; a refusal is shown, never dropped.
//   5. live       /api/v1/live (SSE read with fetch) triggers a refresh.

import { Outbox, command, outcome, replayOrder } from './outbox.js';
import { Settings } from './settings.js';
import { Quality } from './quality.js';

const TOKEN_KEY = 'shopfloor.token';
const CACHE = 'shopfloor.floor.cache:';
const MACHINE_KEY = 'shopfloor.floor.machine';
const OPEN_ORDER = ['created', 'assigned', 'in_progress', 'on_hold'];
const OPEN_TASK = ['scheduled', 'in_progress'];
const CLASSIFY = 'post /api/v1/machines/{machine_id}/stops/classify';
const ACKNOWLEDGE = 'post /api/v1/maintenance/tasks/{task_id}/acknowledge';
const UNCLASSIFIED = 'get /api/v1/stops/unclassified';

const $ = (id) => document.getElementById(id);
const app = {
  token: sessionStorage.getItem(TOKEN_KEY),
  me: null,
  endpoints: new Set(),
  schema: new Set(),
  reasons: [],
  scrapReasons: [],
  machines: [],
  hierarchy: null, // GET /api/v1/hierarchy: where each machine stands (ADR 0062)
  orders: [],
  tasks: [],
  operators: [],
  outbox: null,
  live: null,
  refreshTimer: null,
  signatures: new Map(),
};

// The supervisor's reason codes and shifts (settings.js).
const settings = new Settings({ $, el: (...a) => el(...a), get: (p) => get(p), direct: (...a) => direct(...a), toast: (...a) => toast(...a), gate: (r) => gate(r), app });
// The supervisor's quality holds (quality.js).
const quality = new Quality({ $, el: (...a) => el(...a), get: (p) => get(p), direct: (...a) => direct(...a), toast: (...a) => toast(...a), gate: (r) => gate(r), app });

// ---- helpers ---------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') e.textContent = v;
    else if (k in e && k !== 'list') e[k] = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c) e.append(c);
  return e;
}

const time = (iso) => (iso ? new Date(iso).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }) : '');
const minutes = (s) => (s >= 3600 ? `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min` : `${Math.max(1, Math.round(s / 60))} min`);
const stateWord = { running: 'Running', idle: 'Stopped', down: 'Down', unknown: 'Unknown' };

function toast(text, kind = 'info') {
  const t = $('toast');
  t.textContent = text;
  t.dataset.kind = kind;
}

/** A datetime-local value as an instant (empty: now). */
function floorTime(input) {
  return input.value ? new Date(input.value) : new Date();
}

/** Only re-renders `target` when what it shows changed (keeps focus and choices). */
function renderIf(target, data, render) {
  const sig = JSON.stringify(data);
  if (app.signatures.get(target.id) === sig) return;
  app.signatures.set(target.id, sig);
  render();
}

// ---- the server ------------------------------------------------------------------------

/** A GET; offline (or on a 5xx) the last answer kept for `path`. */
async function get(path) {
  try {
    const res = await fetch(path, {
      headers: { Authorization: `Bearer ${app.token}`, Accept: 'application/json' },
      cache: 'no-store',
    });
    if (res.status === 401) throw Object.assign(new Error('unauthorized'), { status: 401 });
    if (!res.ok) throw Object.assign(new Error(`${res.status}`), { status: res.status });
    const body = await res.json();
    try { localStorage.setItem(CACHE + path, JSON.stringify(body)); } catch { /* full */ }
    return body;
  } catch (e) {
    if (e.status && e.status < 500) throw e;
    const kept = localStorage.getItem(CACHE + path);
    if (kept === null) throw e;
    return JSON.parse(kept);
  }
}

/** What this server offers: "method /path" of every operation, and schema properties
 *  (kept, so that the app still knows them offline). */
async function capabilities() {
  const key = `${CACHE}capabilities`;
  try {
    const res = await fetch('/api/v1/openapi.json', { cache: 'no-store' });
    if (!res.ok) throw new Error(`${res.status}`);
    const doc = await res.json();
    const endpoints = [];
    for (const [path, ops] of Object.entries(doc.paths || {})) {
      for (const m of Object.keys(ops)) endpoints.push(`${m} ${path}`);
    }
    const text = JSON.stringify(doc.components || {});
    const schema = ['scrap_reason', 'assigned_operators'].filter((p) => text.includes(`"${p}"`));
    localStorage.setItem(key, JSON.stringify({ endpoints, schema }));
  } catch { /* offline: the last known */ }
  const kept = JSON.parse(localStorage.getItem(key) || '{"endpoints":[],"schema":[]}');
  return { endpoints: new Set(kept.endpoints), schema: new Set(kept.schema) };
}

const has = (endpoint) => app.endpoints.has(endpoint);
const may = (perm) => !perm || (app.me?.permissions || []).includes(perm);

/** Hides every control whose permission or endpoint is missing. */
function gate(root = document) {
  for (const e of root.querySelectorAll('[data-perm], [data-endpoint], [data-schema]')) {
    const ok = may(e.dataset.perm)
      && (!e.dataset.endpoint || has(e.dataset.endpoint))
      && (!e.dataset.schema || app.schema.has(e.dataset.schema));
    e.dataset.allowed = ok ? '1' : '0';
  }
}

// ---- commands (the outbox) -------------------------------------------------------------

/** Records a command and sends it (now if online, else when the connection returns). */
async function send(label, method, path, body, floorAt) {
  const cmd = command({ label, method, path, body, floorAt });
  await app.outbox.put(cmd);
  renderOutbox();
  const before = navigator.onLine;
  await flush();
  const left = (await app.outbox.all()).find((c) => c.key === cmd.key);
  if (!left) toast(`${label}: done`, 'ok');
  else if (left.state === 'refused') toast(`${label}: refused, ${left.reason}`, 'error');
  else toast(`${label}: saved${before ? '' : ' offline'}, will be sent when the connection returns`, 'pending');
  return !left;
}

let flushing = null;

/** Sends the pending commands in floor-time order; stops at the first that gets no answer. */
function flush() {
  if (!flushing) {
    flushing = sendPending().finally(() => { flushing = null; });
  }
  return flushing;
}

async function sendPending() {
  let sent = 0;
  for (const cmd of replayOrder(await app.outbox.all())) {
    let status = 0;
    let problem = null;
    try {
      const res = await fetch(cmd.path, {
        method: cmd.method,
        headers: {
          Authorization: `Bearer ${app.token}`,
          'Content-Type': 'application/json',
          'Idempotency-Key': cmd.key,
        },
        body: JSON.stringify(cmd.body),
      });
      status = res.status;
      if (!res.ok) problem = await res.json().catch(() => null);
    } catch {
      status = 0;
    }
    const what = outcome(status);
    if (what === 'retry') break;
    if (what === 'done') {
      await app.outbox.remove(cmd.key);
      sent += 1;
    } else {
      const reason = problem?.detail || problem?.title || `HTTP ${status}`;
      await app.outbox.put({ ...cmd, state: 'refused', reason, status });
      toast(`${cmd.label}: refused, ${reason}`, 'error');
    }
  }
  await renderOutbox();
  if (sent) scheduleRefresh(50);
}

async function renderOutbox() {
  const all = await app.outbox.all();
  const pending = all.filter((c) => c.state === 'pending').length;
  const net = $('net');
  net.dataset.net = navigator.onLine ? 'online' : 'offline';
  net.textContent = `${navigator.onLine ? 'Online' : 'Offline'}${pending ? ` · ${pending} waiting` : ''}`;
  $('outbox').hidden = all.length === 0;
  const list = $('outbox-list');
  list.replaceChildren(...all.map((c) => {
    const li = el('li', { 'data-state': c.state, 'data-key': c.key },
      el('span', { className: 'pill', text: c.state === 'pending' ? 'pending' : 'refused' }),
      el('span', { text: ` ${c.label} · ${time(c.floor_at)}` }));
    if (c.state === 'refused') {
      li.append(el('span', { className: 'error', text: ` ${c.reason}` }));
      const dismiss = el('button', { type: 'button', text: 'Dismiss', 'aria-label': `Dismiss: ${c.label}` });
      dismiss.addEventListener('click', async () => { await app.outbox.remove(c.key); renderOutbox(); });
      li.append(dismiss);
    }
    return li;
  }));
}

// ---- data ------------------------------------------------------------------------------

async function load() {
  const jobs = {
    machines: get('/api/v1/machines'),
    hierarchy: get('/api/v1/hierarchy'),
    orders: get('/api/v1/production-orders'),
    tasks: get('/api/v1/maintenance/tasks'),
    operators: has('get /api/v1/operators') ? get('/api/v1/operators') : Promise.resolve([]),
  };
  for (const [k, p] of Object.entries(jobs)) {
    try { app[k] = await p; } catch (e) { if (e.status === 401) return signOut('Your token is no longer accepted.'); }
  }
  render();
}

function scheduleRefresh(ms = 400) {
  clearTimeout(app.refreshTimer);
  app.refreshTimer = setTimeout(load, ms);
}

/** The live feed: any change refreshes the views (coalesced). */
async function follow() {
  if (app.live) app.live.abort();
  const ctl = new AbortController();
  app.live = ctl;
  while (!ctl.signal.aborted) {
    try {
      const res = await fetch('/api/v1/live', {
        headers: { Authorization: `Bearer ${app.token}`, Accept: 'text/event-stream' },
        signal: ctl.signal,
      });
      if (!res.ok) throw new Error(`${res.status}`);
      document.body.dataset.live = 'open';
      const reader = res.body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        if (value && value.length) scheduleRefresh();
      }
    } catch { /* reconnect below */ }
    document.body.dataset.live = 'closed';
    if (ctl.signal.aborted) return;
    await new Promise((r) => setTimeout(r, 3000));
  }
}

// ---- views -----------------------------------------------------------------------------

function views() {
  const role = app.me?.role;
  return {
    operator: ['operator', 'supervisor', 'admin', 'auditor'].includes(role),
    supervisor: ['supervisor', 'admin', 'auditor'].includes(role),
    admin: role === 'admin',
  };
}

function defaultView() {
  return { operator: 'operator', supervisor: 'supervisor', auditor: 'supervisor', admin: 'admin' }[app.me?.role] || 'operator';
}

function currentView() {
  const [name] = location.hash.slice(1).split('/');
  return views()[name] ? name : defaultView();
}

function render() {
  const allowed = views();
  const view = currentView();
  for (const a of document.querySelectorAll('#tabs a')) {
    a.hidden = !allowed[a.dataset.view];
    if (a.dataset.view === view) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  for (const name of ['operator', 'supervisor', 'admin']) $(`view-${name}`).hidden = name !== view;
  if (view === 'operator') renderOperator();
  if (view === 'supervisor') renderSupervisor();
  if (view === 'admin') renderAdmin();
  gate();
}

/** Where a machine stands in the equipment hierarchy: "site › area › line › cell"
 *  (ADR 0062); its line alone before the tree has loaded. */
function placeOf(m) {
  const p = app.hierarchy && app.hierarchy.machines && app.hierarchy.machines.find((x) => x.machine_id === m.machine_id);
  if (!p) return `line ${m.line}`;
  return [p.site, p.area, p.line, p.cell].filter((x) => x).join(' › ');
}

/** The machines as options, grouped by where they stand in the hierarchy. */
function machineOptions(select, { keep = true } = {}) {
  const current = select.value;
  const placed = app.machines.map((m) => [placeOf(m), m.machine_id]);
  renderIf(select, placed, () => {
    const groups = new Map();
    for (const [place, id] of placed.slice().sort((a, b) => a[0].localeCompare(b[0]) || a[1].localeCompare(b[1]))) {
      if (!groups.has(place)) groups.set(place, []);
      groups.get(place).push(el('option', { value: id, text: id }));
    }
    select.replaceChildren(...[...groups].map(([place, options]) => el('optgroup', { label: place }, ...options)));
  });
  if (keep && current) select.value = current;
}

function reasonSelect(id, label) {
  const groups = new Map();
  for (const r of app.reasons) {
    if (r.code === 'unclassified' || r.retired) continue;
    if (!groups.has(r.group)) groups.set(r.group, []);
    groups.get(r.group).push(r);
  }
  const select = el('select', { id, 'aria-label': label });
  select.append(el('option', { value: '', text: 'Choose a reason…' }));
  for (const [group, reasons] of groups) {
    const og = el('optgroup', { label: group.replace(/_/g, ' ') });
    for (const r of reasons) og.append(el('option', { value: r.code, text: r.name }));
    select.append(og);
  }
  return select;
}

// ---- operator --------------------------------------------------------------------------

function operatorMachine() {
  const [, fromHash] = location.hash.slice(1).split('/');
  const wanted = fromHash ? decodeURIComponent(fromHash) : localStorage.getItem(MACHINE_KEY);
  const found = app.machines.find((m) => m.machine_id === wanted) || app.machines[0];
  return found || null;
}

/** The order the operator works on: the machine's current one, else the most advanced open one. */
function orderOf(machine) {
  const open = app.orders.filter((o) => o.assigned_machine === machine.machine_id && OPEN_ORDER.includes(o.status));
  const rank = (o) => OPEN_ORDER.length - OPEN_ORDER.indexOf(o.status) + (o.order_id === machine.current_order ? 10 : 0);
  return open.sort((a, b) => rank(b) - rank(a))[0] || null;
}

function renderOperator() {
  const select = $('op-machine');
  machineOptions(select, { keep: false });
  const m = operatorMachine();
  if (!m) return;
  select.value = m.machine_id;
  const card = $('op-state');
  card.dataset.state = m.current_status;
  $('op-state-word').textContent = stateWord[m.current_status] || m.current_status;
  $('op-state-since').textContent = m.status_since ? `since ${time(m.status_since)}` : '';
  const reason = app.reasons.find((r) => r.code === m.reason_code);
  $('op-state-reason').textContent = m.current_status !== 'running' && m.reason_code ? `Reason: ${reason?.name || m.reason_code}` : '';
  renderOrder(m);
  renderTasks(m);
  loadStops(m);
}

function renderOrder(m) {
  const o = orderOf(m);
  $('op-order-none').hidden = !!o;
  $('op-order-body').hidden = !o;
  $('op-inspection').hidden = !o;
  if (!o) return;
  $('op-order').dataset.order = o.order_id;
  $('op-order-id').textContent = o.order_id;
  $('op-order-product').textContent = o.product_id;
  $('op-order-status').textContent = o.status.replace('_', ' ');
  $('op-order-status').dataset.status = o.status;
  $('op-order-figures').textContent = `${o.good_count} good, ${o.scrap_count} scrap of ${o.quantity}`;
  const progress = $('op-order-progress');
  progress.value = Math.min(1, o.quantity ? o.good_count / o.quantity : 0);
  const people = (o.assigned_operators || []).map((p) => (typeof p === 'string' ? p : p.operator_id || p.name));
  const mine = people.includes(app.me?.name);
  $('op-order-people').textContent = people.length ? `Operators: ${people.join(', ')}${mine ? ' (you)' : ''}` : '';
  const person = $('op-person');
  const ids = app.operators.map((p) => p.operator_id);
  renderIf(person, ids, () => {
    person.replaceChildren(...app.operators.map((p) => el('option', { value: p.operator_id, text: `${p.name} (${p.operator_id})` })));
    if (ids.includes(app.me?.name)) person.value = app.me.name;
    else if (people.length && ids.includes(people[0])) person.value = people[0];
  });
  const can = {
    start: ['created', 'assigned'].includes(o.status),
    hold: o.status === 'in_progress',
    resume: o.status === 'on_hold',
    complete: ['in_progress', 'on_hold'].includes(o.status),
  };
  for (const b of document.querySelectorAll('#op-order [data-cmd=order]')) b.hidden = !can[b.dataset.action];
}

function renderTasks(m) {
  const due = app.tasks.filter((t) => t.machine_id === m.machine_id && OPEN_TASK.includes(t.status))
    .sort((a, b) => a.scheduled_date.localeCompare(b.scheduled_date));
  $('op-tasks-empty').hidden = due.length > 0;
  renderIf($('op-tasks'), due, () => $('op-tasks').replaceChildren(...due.map((t) => {
    const li = el('li', { 'data-task': t.task_id },
      el('span', { text: `${t.description || t.kind} · due ${new Date(t.scheduled_date).toLocaleDateString()} ${t.overdue ? '(overdue)' : ''} · ${t.status.replace('_', ' ')}` }));
    const path = (verb) => `/api/v1/maintenance/tasks/${encodeURIComponent(t.task_id)}/${verb}`;
    if (has(ACKNOWLEDGE) && t.acknowledged_by) {
      li.dataset.acknowledged = 'true';
      li.append(el('span', { class: 'muted', text: `Acknowledged by ${t.acknowledged_by} at ${time(t.acknowledged_at)}` }));
    } else if (has(ACKNOWLEDGE)) {
      li.append(el('button', { type: 'button', 'data-cmd': 'task', 'data-perm': 'machine_events', 'data-path': path('acknowledge'), text: 'Acknowledge', 'aria-label': `Acknowledge ${t.description || t.task_id}` }));
    } else if (t.status === 'scheduled') {
      li.append(el('button', { type: 'button', 'data-cmd': 'task', 'data-perm': 'maintenance', 'data-endpoint': 'post /api/v1/maintenance/tasks/{task_id}/start', 'data-path': path('start'), text: 'Acknowledge and start', 'aria-label': `Start ${t.description || t.task_id}` }));
    } else {
      li.append(el('button', { type: 'button', 'data-cmd': 'task', 'data-perm': 'maintenance', 'data-endpoint': 'post /api/v1/maintenance/tasks/{task_id}/complete', 'data-path': path('complete'), text: 'Done', 'aria-label': `Complete ${t.description || t.task_id}` }));
    }
    return li;
  })));
}

/** A stop as the app shows it, from either source (`stop_at`/`ended_at` or `start`/`end`). */
const stopRow = (s) => ({ ...s, start: s.stop_at ?? s.start, end: s.ended_at ?? s.end ?? null });

/** Unclassified unplanned stops of the last 24 h on one machine (or all, without one):
 *  from the server's list when it has one (exact stop times), else from the state
 *  intervals (one request per machine). */
async function unclassifiedStops(machineId) {
  const to = new Date();
  const from = new Date(to - 24 * 3600e3);
  const q = `from=${encodeURIComponent(from.toISOString())}&to=${encodeURIComponent(to.toISOString())}`;
  if (has(UNCLASSIFIED)) {
    const scope = machineId ? `&machine_id=${encodeURIComponent(machineId)}` : '';
    return (await get(`/api/v1/stops/unclassified?${q}${scope}`)).map(stopRow);
  }
  if (!machineId) {
    const per = await Promise.all(app.machines.map((m) => unclassifiedStops(m.machine_id)
      .then((rows) => rows.map((x) => ({ ...x, machine_id: m.machine_id }))).catch(() => [])));
    return per.flat();
  }
  const rows = await get(`/api/v1/machines/${encodeURIComponent(machineId)}/states?${q}`);
  return rows.filter((s) => (s.state === 'idle' || s.state === 'down') && !s.planned
    && (!s.final_reason_code || s.final_reason_code === 'unclassified')).map(stopRow);
}

async function loadStops(m) {
  let stops = [];
  try { stops = await unclassifiedStops(m.machine_id); } catch { /* keep none */ }
  const canClassify = may('machine_events');
  stops = stops.map((s) => ({
    start: s.start, state: s.state, end: s.end, duration_s: s.duration_s,
    // Without the classify endpoint only the current stop can be given a reason (a new
    // state report with the reason, from now on).
    classifiable: canClassify && (has(CLASSIFY) || (!s.end && has('post /api/v1/machines/events'))),
  })).sort((a, b) => b.start.localeCompare(a.start));
  $('op-stops-empty').hidden = stops.length > 0;
  renderIf($('op-stops'), { id: m.machine_id, stops }, () => $('op-stops').replaceChildren(...stops.map((s, i) => {
    const what = `${stateWord[s.state]} at ${time(s.start)}${s.end ? `, ${minutes(s.duration_s)}` : ', now'}`;
    const li = el('li', { 'data-stop': s.start, 'data-current': s.end ? null : 'true' }, el('span', { className: 'stop-what', text: what }));
    if (s.classifiable) {
      li.append(reasonSelect(`op-stop-${i}`, `Reason for the stop: ${what}`));
      li.append(el('button', { type: 'button', 'data-cmd': 'classify', 'data-start': s.start, 'data-state': s.state, 'data-current': s.end ? '' : '1', text: 'Classify', 'aria-label': `Classify the stop: ${what}` }));
    }
    return li;
  })));
  gate($('op-stops'));
}

async function onOperatorClick(ev) {
  const b = ev.target.closest('button[data-cmd]');
  if (!b) return;
  const m = operatorMachine();
  if (!m) return;
  const mid = m.machine_id;
  if (b.dataset.cmd === 'state') {
    const at = floorTime($('op-when'));
    await send(`${mid}: ${stateWord[b.dataset.state]}`, 'POST', '/api/v1/machines/events',
      { event_type: 'state_changed', machine_id: mid, timestamp: at.toISOString(), state: b.dataset.state }, at);
    $('op-when').value = '';
  } else if (b.dataset.cmd === 'classify') {
    const select = b.previousElementSibling;
    if (!select.value) { toast('Choose a reason first', 'error'); select.focus(); return; }
    if (has(CLASSIFY)) {
      await send(`${mid}: classify stop at ${time(b.dataset.start)}`, 'POST', `/api/v1/machines/${encodeURIComponent(mid)}/stops/classify`,
        { stop_at: b.dataset.start, reason_code: select.value });
    } else {
      const at = new Date();
      await send(`${mid}: stop reason ${select.value}`, 'POST', '/api/v1/machines/events',
        { event_type: 'state_changed', machine_id: mid, timestamp: at.toISOString(), state: b.dataset.state, reason: select.value }, at);
    }
    app.signatures.delete('op-stops');
  } else if (b.dataset.cmd === 'order') {
    const o = orderOf(m);
    if (!o) return;
    const at = floorTime($('op-when'));
    await send(`${o.order_id}: ${b.dataset.action}`, 'POST', `/api/v1/production-orders/${encodeURIComponent(o.order_id)}/${b.dataset.action}`,
      { timestamp: at.toISOString() }, at);
    $('op-when').value = '';
  } else if (b.dataset.cmd === 'clock') {
    const o = orderOf(m);
    const person = $('op-person').value;
    if (!o || !person) return;
    const at = floorTime($('op-when'));
    const body = { order_id: o.order_id, timestamp: at.toISOString() };
    if (b.dataset.action === 'clock-on') body.machine_id = mid;
    await send(`${person}: ${b.dataset.action.replace('-', ' ')} ${o.order_id}`, 'POST',
      `/api/v1/operators/${encodeURIComponent(person)}/${b.dataset.action}`, body, at);
    $('op-when').value = '';
  } else if (b.dataset.cmd === 'task') {
    await send(b.textContent, 'POST', b.dataset.path, {});
  }
  scheduleRefresh(100);
}

/** The scrap reasons of the server (ADR 0050) as the options of the parts form's select. */
function fillScrapReasons() {
  const select = $('op-scrap-reason');
  select.replaceChildren(el('option', { value: '', text: 'Choose a reason…' }),
    ...app.scrapReasons.map((r) => el('option', { value: r.code, text: r.name })));
  scrapReasonRequired();
}

/** Whether the parts form asks for a scrap reason: scrap > 0 and the server takes one. */
function asksScrapReason() {
  return Number($('op-scrap').value) > 0 && $('op-scrap-reason-field').dataset.allowed === '1'
    && app.scrapReasons.length > 0;
}

/** A scrap reason is required (natively, so the browser says so) while there is scrap. */
function scrapReasonRequired() {
  $('op-scrap-reason').required = asksScrapReason();
}

async function onParts(ev) {
  ev.preventDefault();
  const m = operatorMachine();
  if (!m) return;
  scrapReasonRequired();
  if (!$('op-scrap-reason').reportValidity()) return;
  const good = Number($('op-good').value);
  const scrap = Number($('op-scrap').value);
  const at = floorTime($('op-when'));
  const o = orderOf(m);
  const body = { event_type: 'parts_produced', machine_id: m.machine_id, timestamp: at.toISOString(), good, scrap };
  if (o && o.status === 'in_progress') body.order_id = o.order_id;
  if (asksScrapReason()) body.scrap_reason = $('op-scrap-reason').value;
  await send(`${m.machine_id}: ${good} good, ${scrap} scrap`, 'POST', '/api/v1/machines/events', body, at);
  $('op-good').value = 0;
  $('op-scrap').value = 0;
  $('op-scrap-reason').value = '';
  scrapReasonRequired();
  $('op-when').value = '';
  scheduleRefresh(100);
}

async function onInspection(ev) {
  ev.preventDefault();
  const m = operatorMachine();
  const o = m && orderOf(m);
  if (!o) return;
  const body = { sample_size: Number($('op-sample').value), defects: Number($('op-defects').value) };
  if ($('op-notes').value) body.notes = $('op-notes').value;
  body.inspector = app.me?.name;
  const at = floorTime($('op-when'));
  body.timestamp = at.toISOString();
  await send(`${o.order_id}: inspection`, 'POST', `/api/v1/production-orders/${encodeURIComponent(o.order_id)}/inspections`, body, at);
  $('op-when').value = '';
  $('op-notes').value = '';
  scheduleRefresh(100);
}

// ---- supervisor ------------------------------------------------------------------------

function renderSupervisor() {
  machineOptions($('sv-machine'));
  machineOptions($('sv-maint-machine'));
  renderIf($('sv-operators'), app.operators, () => $('sv-operators').replaceChildren(...app.operators.map((p, i) => el('label', { className: 'check' },
    el('input', { type: 'checkbox', value: p.operator_id, id: `sv-op-${i}` }), el('span', { text: ` ${p.name} (${p.operator_id})` })))));
  const open = app.orders.filter((o) => OPEN_ORDER.includes(o.status));
  const tbody = $('sv-orders').tBodies[0];
  renderIf(tbody, open.map((o) => [o.order_id, o.status, o.good_count, o.assigned_machine]), () => tbody.replaceChildren(...open.map((o) => {
    const actions = el('td');
    const act = (action, label, cls) => el('button', { type: 'button', className: cls, 'data-cmd': 'order', 'data-order': o.order_id, 'data-action': action, 'data-perm': 'orders', 'data-endpoint': `post /api/v1/production-orders/{order_id}/${action}`, text: label, 'aria-label': `${label} ${o.order_id}` });
    if (['created', 'assigned'].includes(o.status) && o.assigned_machine) actions.append(act('start', 'Start'));
    if (o.status === 'in_progress') actions.append(act('hold', 'Hold'), act('complete', 'Complete'));
    if (o.status === 'on_hold') actions.append(act('resume', 'Resume'));
    actions.append(act('cancel', 'Cancel', 'danger'));
    return el('tr', { 'data-order': o.order_id },
      el('td', { text: o.order_id }), el('td', { text: o.product_id }), el('td', { text: o.assigned_machine || '—' }),
      el('td', { text: o.status.replace('_', ' ') }), el('td', { text: `${o.good_count} / ${o.quantity}` }), actions);
  })));
  const backlog = app.tasks.filter((t) => OPEN_TASK.includes(t.status)).sort((a, b) => a.scheduled_date.localeCompare(b.scheduled_date));
  const tb = $('sv-backlog').tBodies[0];
  renderIf(tb, backlog, () => tb.replaceChildren(...backlog.map((t) => el('tr', {},
    el('td', { text: t.description || t.task_id }), el('td', { text: t.machine_id }), el('td', { text: t.kind }),
    el('td', { text: `${new Date(t.scheduled_date).toLocaleString()}${t.overdue ? ' (overdue)' : ''}` }),
    el('td', { text: t.status.replace('_', ' ') }))))); 
  settings.render();
  quality.refresh();
  loadPlantStops();
  loadScrap();
}

/** Scrap of the last 24 h by scrap reason, largest first (ADR 0050). */
async function loadScrap() {
  if (!has('get /api/v1/scrap')) return;
  const from = new Date(Date.now() - 24 * 3600 * 1000).toISOString();
  const report = await get(`/api/v1/scrap?from=${encodeURIComponent(from)}`).catch(() => null);
  if (!report) return;
  const name = (code) => app.scrapReasons.find((r) => r.code === code)?.name || code;
  $('sv-scrap-total').textContent = `${report.scrap_count} scrap of ${report.good_count + report.scrap_count} parts`;
  const tb = $('sv-scrap').tBodies[0];
  renderIf(tb, report.by_reason, () => tb.replaceChildren(...report.by_reason.map((r) => el('tr', {},
    el('td', { text: r.scrap_reason ? (r.name || name(r.scrap_reason)) : 'No reason given' }), el('td', { text: r.scrap }),
    el('td', { text: `${Math.round((r.share || 0) * 100)} %` }), el('td', { text: r.reports })))));
}

async function loadPlantStops() {
  const rows = (await unclassifiedStops(null).catch(() => [])).sort((a, b) => b.start.localeCompare(a.start));
  const tb = $('sv-stops').tBodies[0];
  renderIf(tb, rows, () => tb.replaceChildren(...rows.map((s) => el('tr', {},
    el('td', {}, el('a', { href: `#operator/${encodeURIComponent(s.machine_id)}`, text: s.machine_id })),
    el('td', { text: stateWord[s.state] || s.state }), el('td', { text: new Date(s.start).toLocaleString() }),
    el('td', { text: s.end ? minutes(s.duration_s) : 'ongoing' })))));
}

async function onNewOrder(ev) {
  ev.preventDefault();
  const orderId = $('sv-order-id').value.trim();
  const bom = $('sv-bom').value.split('\n').map((l) => l.trim()).filter(Boolean).map((l) => {
    const [item_id, qty] = l.split(/\s+/);
    return { item_id, qty_per_unit: Number(qty) };
  });
  const created = await send(`${orderId}: create`, 'POST', '/api/v1/production-orders',
    { order_id: orderId, product_id: $('sv-product').value.trim(), quantity: Number($('sv-quantity').value), bom });
  const machine = $('sv-machine').value;
  const operatorIds = [...document.querySelectorAll('#sv-operators input:checked')].map((c) => c.value);
  if (machine && (created || !navigator.onLine)) {
    const body = { machine_id: machine };
    if (operatorIds.length) body.operator_ids = operatorIds;
    await send(`${orderId}: assign to ${machine}`, 'POST', `/api/v1/production-orders/${encodeURIComponent(orderId)}/assign`, body);
  }
  ev.target.reset();
  scheduleRefresh(100);
}

async function onSupervisorClick(ev) {
  const b = ev.target.closest('button[data-cmd=order]');
  if (!b) return;
  const body = b.dataset.action === 'hold' || b.dataset.action === 'cancel' ? { reason: `by ${app.me?.name}` } : {};
  await send(`${b.dataset.order}: ${b.dataset.action}`, 'POST', `/api/v1/production-orders/${encodeURIComponent(b.dataset.order)}/${b.dataset.action}`, body);
  scheduleRefresh(100);
}

async function onMaintenance(ev) {
  ev.preventDefault();
  const date = new Date($('sv-maint-date').value);
  const body = { machine_id: $('sv-maint-machine').value, kind: $('sv-maint-kind').value, scheduled_date: date.toISOString() };
  if ($('sv-maint-desc').value) body.description = $('sv-maint-desc').value;
  if (await send(`maintenance on ${body.machine_id}`, 'POST', '/api/v1/maintenance/schedule', body)) ev.target.reset();
  scheduleRefresh(100);
}

async function onStock(ev) {
  ev.preventDefault();
  const body = { item_id: $('sv-item').value.trim(), item_type: $('sv-item-type').value, location: $('sv-location').value.trim(),
    delta: Number($('sv-delta').value), reason: $('sv-stock-reason').value.trim() };
  if (await send(`${body.item_id} ${body.delta > 0 ? '+' : ''}${body.delta}`, 'PATCH', '/api/v1/inventory/update', body)) ev.target.reset();
}

// ---- admin -----------------------------------------------------------------------------

async function renderAdmin() {
  if (may('tokens')) {
    const tokens = await get('/api/v1/auth/tokens').catch(() => []);
    const tb = $('ad-tokens').tBodies[0];
    renderIf(tb, tokens, () => tb.replaceChildren(...tokens.map((t) => el('tr', { 'data-token': t.name },
      el('td', { text: t.name }), el('td', { text: t.role }), el('td', { text: t.revoked_at ? 'revoked' : 'active' }),
      el('td', {}, t.revoked_at ? null : el('button', { type: 'button', className: 'danger', 'data-cmd': 'revoke', 'data-name': t.name, 'data-perm': 'tokens', text: 'Revoke', 'aria-label': `Revoke ${t.name}` }))))));
    gate(tb);
  }
  renderIf($('ad-people'), app.operators, () => $('ad-people').replaceChildren(...app.operators.map((p) =>
    el('li', { text: `${p.name} (${p.operator_id})${p.badge_id ? ` · badge ${p.badge_id}` : ''}${(p.skills || []).length ? ` · ${p.skills.join(', ')}` : ''}` }))));
}

/** Direct calls (no outbox): the answer is needed at once (a new token is shown once). */
async function direct(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: { Authorization: `Bearer ${app.token}`, 'Content-Type': 'application/json', 'Idempotency-Key': crypto.randomUUID() },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const answer = res.status === 204 ? null : await res.json().catch(() => null);
  if (!res.ok) throw new Error(answer?.detail || answer?.title || `HTTP ${res.status}`);
  return answer;
}

async function onIssue(ev) {
  ev.preventDefault();
  try {
    const t = await direct('POST', '/api/v1/auth/tokens', { name: $('ad-token-name').value.trim(), role: $('ad-token-role').value });
    $('ad-token-new').textContent = `Token for ${t.name} (${t.role}), shown once: ${t.token}`;
    ev.target.reset();
    app.signatures.delete('ad-tokens');
    renderAdmin();
  } catch (e) { toast(`Not issued: ${e.message}`, 'error'); }
}

async function onAdminClick(ev) {
  const b = ev.target.closest('button[data-cmd=revoke]');
  if (!b) return;
  try {
    await direct('DELETE', `/api/v1/auth/tokens/${encodeURIComponent(b.dataset.name)}`);
    toast(`${b.dataset.name} revoked`, 'ok');
    renderAdmin();
  } catch (e) { toast(`Not revoked: ${e.message}`, 'error'); }
}

async function onMachine(ev) {
  ev.preventDefault();
  const body = { machine_id: $('ad-machine-id').value.trim(), type: $('ad-machine-type').value.trim(), line: $('ad-machine-line').value.trim(),
    ideal_cycle_time_s: Number($('ad-machine-cycle').value) };
  if (await send(`register ${body.machine_id}`, 'POST', '/api/v1/machines', body)) ev.target.reset();
  scheduleRefresh(100);
}

async function onPerson(ev) {
  ev.preventDefault();
  const body = { operator_id: $('ad-person-id').value.trim(), name: $('ad-person-name').value.trim() };
  if ($('ad-person-badge').value.trim()) body.badge_id = $('ad-person-badge').value.trim();
  const skills = $('ad-person-skills').value.split(',').map((s) => s.trim()).filter(Boolean);
  if (skills.length) body.skills = skills;
  if (await send(`register ${body.name}`, 'POST', '/api/v1/operators', body)) ev.target.reset();
  scheduleRefresh(100);
}

// ---- sign-in and start -----------------------------------------------------------------

async function signIn(ev) {
  ev.preventDefault();
  app.token = $('token').value.trim();
  try {
    await start();
    sessionStorage.setItem(TOKEN_KEY, app.token);
    $('token').value = '';
  } catch (e) {
    app.token = null;
    $('signin-error').textContent = e.status === 401 ? 'This token is not accepted.' : `Cannot sign in: ${e.message}`;
  }
}

function signOut(message = '') {
  sessionStorage.removeItem(TOKEN_KEY);
  app.token = null;
  app.me = null;
  if (app.live) app.live.abort();
  for (const k of Object.keys(localStorage)) if (k.startsWith(CACHE)) localStorage.removeItem(k);
  for (const v of document.querySelectorAll('.view')) v.hidden = true;
  $('tabs').hidden = true;
  $('signout').hidden = true;
  $('whoami').textContent = '';
  $('signin').hidden = false;
  $('signin-error').textContent = message;
}

async function start() {
  const me = await get('/api/v1/auth/me');
  app.me = me;
  const caps = await capabilities();
  app.endpoints = caps.endpoints;
  app.schema = caps.schema;
  await settings.load();
  if (has('get /api/v1/scrap-reasons')) {
    app.scrapReasons = await get('/api/v1/scrap-reasons').catch(() => []);
  }
  fillScrapReasons();
  document.body.dataset.role = me.role;
  $('signin').hidden = true;
  $('tabs').hidden = false;
  $('signout').hidden = false;
  $('whoami').textContent = `${me.name} · ${me.role}`;
  gate();
  await load();
  flush();
  follow();
}

function wire() {
  $('signin-form').addEventListener('submit', signIn);
  $('signout').addEventListener('click', () => signOut());
  $('op-machine').addEventListener('change', (e) => {
    localStorage.setItem(MACHINE_KEY, e.target.value);
    location.hash = `operator/${encodeURIComponent(e.target.value)}`;
  });
  $('view-operator').addEventListener('click', onOperatorClick);
  $('op-parts').addEventListener('submit', onParts);
  $('op-scrap').addEventListener('input', scrapReasonRequired);
  $('op-inspection').addEventListener('submit', onInspection);
  $('sv-order').addEventListener('submit', onNewOrder);
  $('view-supervisor').addEventListener('click', onSupervisorClick);
  $('sv-maint').addEventListener('submit', onMaintenance);
  $('sv-stock').addEventListener('submit', onStock);
  settings.wire();
  quality.wire();
  $('ad-token').addEventListener('submit', onIssue);
  $('view-admin').addEventListener('click', onAdminClick);
  $('ad-machine').addEventListener('submit', onMachine);
  $('ad-person').addEventListener('submit', onPerson);
  window.addEventListener('hashchange', () => { app.signatures.clear(); if (app.me) render(); });
  window.addEventListener('online', () => { renderOutbox(); flush(); });
  window.addEventListener('offline', () => renderOutbox());
  setInterval(() => { if (app.me) flush(); }, 5000);
  setInterval(() => { if (app.me) scheduleRefresh(0); }, 30000);
}

async function main() {
  wire();
  if ('serviceWorker' in navigator) {
    navigator.serviceWorker.register('/assets/floor-sw.js', { scope: '/floor' })
      .catch((e) => console.warn('no service worker', e));
  }
  app.outbox = await Outbox.open();
  await renderOutbox();
  if (!app.token) {
    signOut();
    document.body.dataset.ready = '1';
    return;
  }
  try {
    await start();
  } catch (e) {
    signOut(e.status === 401 ? 'Your token is no longer accepted.' : `Cannot start: ${e.message}`);
  }
  document.body.dataset.ready = '1';
}

main();
