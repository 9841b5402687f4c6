// Shopfloor plant dashboard: vanilla JavaScript, SVG charts, no build step (ADR 0011).
//
// Layout of this file:
//   1. helpers      DOM and SVG builders, formatting, icons
//   2. api          fetch with the bearer token, problem+json errors
//   3. window       the KPI window (current shift, today, last 24 h, custom)
//   4. store        what the views show, and the loaders that fill it (one slice each)
//   5. live         /api/v1/live read with fetch() + an SSE parser, reconnecting with
//                   back-off; updates map topics to the slices to refetch (debounced)
//   6. views        overview, downtime, orders & maintenance, inventory, telemetry, reports
//   7. shell        sign-in, navigation, clock, start-up
//
// Nothing is polled: data is fetched when a view opens, when the window changes, when a
// live `update` names a topic the view shows, and after `ready`/`resync` (the view is
// refetched whole, since updates may have been missed while disconnected).
(() => {
  'use strict';

  // ==== 1. helpers ====================================================================

  const SVG_NS = 'http://www.w3.org/2000/svg';
  const $ = (id) => document.getElementById(id);

  /** Appends children (strings, nodes, arrays, null) to `el`. */
  function append(el, children) {
    for (const c of children.flat(Infinity)) {
      if (c == null || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  /** Sets attributes: `class`, `data-*`, `aria-*`, `on*` handlers, `style` objects. */
  function setAttrs(el, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'style' && typeof v === 'object') Object.assign(el.style, v);
      // CSS variables work in style properties, not in SVG presentation attributes.
      else if (typeof v === 'string' && v.startsWith('var(')) el.style.setProperty(k, v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    return el;
  }

  /** An HTML element: h('td', {class: 'n'}, '12'). Text is never parsed as HTML. */
  const h = (tag, attrs, ...children) => append(setAttrs(document.createElement(tag), attrs), children);
  /** An SVG element, likewise. */
  const s = (tag, attrs, ...children) => append(setAttrs(document.createElementNS(SVG_NS, tag), attrs), children);

  const pct = (x, digits = 0) => (x == null || !Number.isFinite(x) ? '—' : `${(x * 100).toFixed(digits)}%`);
  const num = (x, digits = 0) =>
    x == null ? '—' : Number(x).toLocaleString(undefined, { maximumFractionDigits: digits });
  const pad = (n) => String(n).padStart(2, '0');
  const hhmm = (d) => `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  const sameDay = (a, b) => a.toDateString() === b.toDateString();
  function dateTime(d) {
    d = new Date(d);
    return sameDay(d, new Date())
      ? hhmm(d)
      : `${d.toLocaleDateString(undefined, { day: 'numeric', month: 'short' })} ${hhmm(d)}`;
  }

  /** 45 s, 12 min, 3 h 05 min, 2 d 4 h. */
  function duration(seconds) {
    if (seconds == null || !Number.isFinite(seconds)) return '—';
    const sec = Math.max(0, Math.round(seconds));
    if (sec < 60) return `${sec} s`;
    const min = Math.floor(sec / 60);
    if (min < 60) return `${min} min`;
    const hours = Math.floor(min / 60);
    if (hours < 48) return `${hours} h ${pad(min % 60)} min`;
    return `${Math.floor(hours / 24)} d ${hours % 24} h`;
  }

  /** A time axis label or a total: 45 min, 3.5 h. */
  const hours = (seconds) => (seconds == null ? '—' : seconds < 5400 ? `${Math.round(seconds / 60)} min` : `${num(seconds / 3600, 1)} h`);

  /** A round step for an axis from 0 to `max`, about four steps. */
  function niceStep(max) {
    const raw = max / 4 || 1;
    const mag = 10 ** Math.floor(Math.log10(raw));
    return [1, 2, 2.5, 5, 10].map((m) => m * mag).find((st) => st >= raw);
  }

  /** A round step of time (s) for an axis from 0 to `max` s, at most five steps. */
  const timeStep = (max) => [60, 120, 300, 600, 900, 1200, 1800, 3600, 7200, 10800, 14400, 21600, 43200, 86400]
    .find((st) => max / st <= 5) || 86400 * Math.ceil(max / 86400 / 5);
  /** A time axis label in the unit of its step: 30 min, 2 h. */
  const timeLabel = (v, step) => (step >= 3600 ? `${v / 3600} h` : `${Math.round(v / 60)} min`);

  /** A small inline icon (16×16, currentColor). */
  const ICONS = {
    running: 'M4 2.5v11l9.5-5.5z',
    idle: 'M3.5 2.5h3.2v11H3.5zM9.3 2.5h3.2v11H9.3z',
    down: 'M8 1.2 15.2 14.3H.8zM7.1 5.5v4.6h1.8V5.5zM7.1 11.2V13h1.8v-1.8z',
    unknown: 'M8 1a7 7 0 1 0 0 14A7 7 0 0 0 8 1zm0 2.2a4.8 4.8 0 1 1 0 9.6 4.8 4.8 0 0 1 0-9.6z',
    clock: 'M8 1a7 7 0 1 0 0 14A7 7 0 0 0 8 1zm0 1.8a5.2 5.2 0 1 1 0 10.4A5.2 5.2 0 0 1 8 2.8zM7.2 4v4.6l3.4 2 .8-1.3-2.6-1.6V4z',
    check: 'M6.2 11.6 2.4 7.8 1.2 9l5 5 8.6-8.6-1.2-1.2z',
    box: 'M8 1 1.5 4v8L8 15l6.5-3V4zm0 1.7L12.6 5 8 7.2 3.4 5zM3 6.3l4.3 2v5L3 11.3zm5.7 7v-5l4.3-2v5z',
    wave: 'M1 9h2.5l2-5 3 9 2-6 1.5 2H15v1.6h-3.8l-.7-1-2.2 6.4-3-9-1.2 3.6H1z',
    up: 'M8 2 2.5 8h3.5v6h4V8h3.5z',
    downArrow: 'M8 14 2.5 8h3.5V2h4v6h3.5z',
  };
  const icon = (name, label) =>
    s('svg', { class: 'icon', viewBox: '0 0 16 16', 'aria-hidden': label ? null : 'true', role: label ? 'img' : null,
      'aria-label': label || null, focusable: 'false' },
    s('path', { d: ICONS[name] || ICONS.unknown, fill: 'currentColor', 'fill-rule': 'evenodd' }));

  const STATE_LABEL = { running: 'Running', idle: 'Idle', down: 'Down', unknown: 'No data' };
  const stateOf = (st) => (STATE_LABEL[st] ? st : 'unknown');
  /** The state badge: colour, pattern, icon and word, so colour is never alone. */
  const stateBadge = (st) => h('span', { class: 'badge', 'data-state': stateOf(st) }, icon(stateOf(st)), STATE_LABEL[stateOf(st)]);

  /** A ratio's colour class (with the number always shown next to it). */
  const level = (x) => (x == null ? 'level-none' : x >= 0.85 ? 'level-hi' : x >= 0.6 ? 'level-mid' : 'level-lo');

  /** A progress bar; `label` names it for screen readers. */
  function progress(fraction, label) {
    const f = Math.max(0, Math.min(1, fraction || 0));
    return h('div', { class: 'progress', role: 'progressbar', 'aria-label': label,
      'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': Math.round(f * 100) },
    h('span', { style: { width: `${f * 100}%` } }));
  }

  const empty = (text) => h('p', { class: 'empty' }, text);
  const table = (head, rows) =>
    h('table', {}, h('thead', {}, h('tr', {}, head.map(([t, cls]) => h('th', { class: cls, scope: 'col' }, t)))),
      h('tbody', {}, rows));

  // ==== 2. api =======================================================================

  const TOKEN_KEY = 'shopfloor.token';
  let token = sessionStorage.getItem(TOKEN_KEY);

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  /** GET an /api/v1 path with the bearer token; `params` skips null values. */
  async function api(path, params, withToken = token) {
    const url = new URL(path, location.origin);
    for (const [k, v] of Object.entries(params || {})) if (v != null) url.searchParams.set(k, v);
    const res = await fetch(url, { headers: { Authorization: `Bearer ${withToken}`, Accept: 'application/json' }, cache: 'no-store' });
    if (res.ok) return res.json();
    let detail = `HTTP ${res.status}`;
    try {
      const p = await res.json();
      detail = [p.title, p.detail].filter(Boolean).join(': ') || detail;
    } catch (_) { /* not problem+json */ }
    if (res.status === 401 && withToken === token) signOut('Your token is no longer accepted; sign in again.');
    throw new ApiError(res.status, detail);
  }

  // ==== 3. window ====================================================================

  const WINDOW_KEY = 'shopfloor.window';
  const HOUR = 3600e3;
  /** The KPI window: `from`, and `to` (null: now, moving). */
  const win = { kind: localStorage.getItem(WINDOW_KEY) || 'shift', from: new Date(Date.now() - 8 * HOUR), to: null, label: '' };

  /** Start of the conventional 8-hour shift (06/14/22 local) containing `now`. */
  function fallbackShiftStart(now) {
    const d = new Date(now);
    const hr = d.getHours();
    const start = hr >= 22 ? 22 : hr >= 14 ? 14 : hr >= 6 ? 6 : -2;
    d.setHours(start, 0, 0, 0); // -2 rolls back to 22:00 the day before
    return d;
  }

  /** Resolves the chosen window to dates. The current shift comes from the lines' shift
   *  calendars (a KPI series by shift); without one, 8-hour shifts from 06:00. */
  async function resolveWindow() {
    const now = new Date();
    win.to = null;
    if (win.kind === '24h') {
      win.from = new Date(now - 24 * HOUR);
      win.label = 'rolling';
    } else if (win.kind === 'today') {
      win.from = new Date(now.getFullYear(), now.getMonth(), now.getDate());
      win.label = `since ${hhmm(win.from)}`;
    } else if (win.kind === 'custom') {
      const from = new Date($('from').value);
      const to = new Date($('to').value);
      if (Number.isNaN(+from) || Number.isNaN(+to) || from >= to) {
        win.from = new Date(now - 24 * HOUR);
        win.label = 'choose a valid range';
      } else {
        win.from = from;
        win.to = to;
        win.label = '';
      }
    } else {
      let shift = null;
      try {
        const rows = await api('/api/v1/kpi-metrics', { granularity: 'shift', from: new Date(now - 24 * HOUR).toISOString(), to: now.toISOString() });
        for (const r of rows) if (r.shift && (!shift || new Date(r.to) > new Date(shift.to) || (+new Date(r.to) === +new Date(shift.to) && new Date(r.from) > new Date(shift.from)))) shift = r;
      } catch (e) { if (e.status === 401) return; }
      if (shift) {
        win.from = new Date(shift.from);
        win.label = `${shift.shift} since ${hhmm(win.from)}`;
      } else {
        win.from = fallbackShiftStart(now);
        win.label = `since ${hhmm(win.from)} (8-hour shifts)`;
      }
    }
    $('window-label').textContent = win.label;
  }

  /** The window as query parameters (a moving `to` is now), narrowed to the chosen node
   *  of the equipment hierarchy (ADR 0062). */
  const range = () => ({ from: win.from.toISOString(), to: (win.to || new Date()).toISOString(), ...scope() });
  // The KPI window, for the views that are modules of their own (losses.js).
  window.shopfloor = { range };

  // ==== 3b. equipment hierarchy ======================================================

  const NODE_KEY = 'shopfloor.node';
  /** The chosen node as `level:id` ('' for the whole plant). */
  let chosenNode = localStorage.getItem(NODE_KEY) || '';
  /** The query parameter each level filters by (the implicit `default` site and area too). */
  const LEVEL_PARAM = { enterprise: 'node', site: 'site', area: 'area', line: 'line', work_cell: 'cell' };
  /** The chosen node as query parameters. */
  function scope() {
    const i = chosenNode.indexOf(':');
    if (i < 0) return {};
    const param = LEVEL_PARAM[chosenNode.slice(0, i)] || 'node';
    return { [param]: chosenNode.slice(i + 1) };
  }
  /** The chosen node's name, for the summary ("Press shop OEE"). */
  let chosenName = '';
  /** Fills the selector from the tree, indented by depth; keeps the choice if it still exists. */
  function fillNodes(tree) {
    const select = $('node');
    const options = [h('option', { value: '' }, 'Whole plant')];
    const walk = (n, depth) => {
      const label = `${'\u00a0\u00a0'.repeat(depth)}${n.name} (${n.level.replace('_', ' ')})`;
      options.push(h('option', { value: `${n.level}:${n.node_id}` }, label));
      for (const c of n.children) walk(c, depth + 1);
    };
    for (const r of tree.roots) walk(r, 0);
    select.replaceChildren(...options);
    if (![...select.options].some((o) => o.value === chosenNode)) chosenNode = '';
    select.value = chosenNode;
    chosenName = chosenNode ? select.options[select.selectedIndex].textContent.trim() : '';
  }

  // ==== 4. store =====================================================================

  /** Everything the views show, filled by the loaders below. */
  const store = {
    machines: new Map(),   // machine_id → status-board row
    kpi: new Map(),        // machine_id → KPI row for the window
    kpiWindow: '',         // the window kind those rows are of
    plant: null,           // the roll-up KPI row of every machine
    downtime: new Map(),   // machine_id → downtime report for the window
    intervals: new Map(),  // machine_id → state intervals for the window
    orders: new Map(),     // order_id → order
    tasks: [],             // maintenance tasks
    rejections: [],        // the process manager's refused follow-up commands, newest first
    levels: [],            // inventory levels
    movements: [],         // newest inventory movements
    telemetry: [],         // rollup points of the chosen machine
    reasons: new Map(),    // reason code → its name (the catalogue, loaded once)
    reports: [],           // generated reports, newest first (corrected versions too)
    schedules: [],         // report schedules
    verified: new Map(),   // report_id → the outcome of its last verification here
  };

  /** A reason code's name ("Jam"), or the text as given. */
  const reasonName = (code) => (code && store.reasons.get(code)) || code;
  /** A loss category's name: `setup_adjustment` → "Setup adjustment". */
  const lossName = (key) => (key ? key.charAt(0).toUpperCase() + key.slice(1).replace(/_/g, ' ') : key);

  const loaders = {
    async hierarchy() { fillNodes(await api('/api/v1/hierarchy')); },
    async reasons() {
      const rows = await api('/api/v1/reason-codes');
      store.reasons = new Map(rows.map((r) => [r.code, r.name]));
    },
    async machines() {
      const rows = await api('/api/v1/machines', scope());
      store.machines = new Map(rows.map((m) => [m.machine_id, m]));
    },
    async kpi(id) {
      const kind = win.kind;
      const rows = await api('/api/v1/kpi-metrics', { ...range(), machine_id: id });
      if (!id) { store.kpi = new Map(); store.kpiWindow = kind; }
      for (const r of rows) store.kpi.set(r.machine_id, r);
    },
    async plant() {
      const rows = await api('/api/v1/kpi-metrics', { ...range(), rollup: 'true' });
      store.plant = rows[0] || null;
    },
    async downtime(id) {
      const rows = await api('/api/v1/downtime', { ...range(), machine_id: id });
      if (!id) store.downtime = new Map();
      for (const r of rows) store.downtime.set(r.machine_id, r);
    },
    async intervals(id) {
      const ids = id ? [id] : [...store.machines.keys()];
      if (!id) store.intervals = new Map();
      await Promise.all(ids.map(async (m) => store.intervals.set(m, await api(`/api/v1/machines/${encodeURIComponent(m)}/states`, { from: range().from, to: range().to }))));
    },
    async orders(id) {
      if (id) {
        store.orders.set(id, await api(`/api/v1/production-orders/${encodeURIComponent(id)}`));
      } else {
        const rows = await api('/api/v1/production-orders', { limit: 500 });
        store.orders = new Map(rows.map((o) => [o.order_id, o]));
      }
    },
    async tasks() { store.tasks = await api('/api/v1/maintenance/tasks'); },
    async rejections() { store.rejections = await api('/api/v1/process/rejections', { limit: 20 }); },
    async levels(item) {
      const rows = await api('/api/v1/inventory', { item_id: item });
      store.levels = item ? store.levels.filter((l) => l.item_id !== item).concat(rows) : rows;
      store.levels.sort((a, b) => a.item_id.localeCompare(b.item_id) || a.location.localeCompare(b.location));
    },
    async movements() { store.movements = await api('/api/v1/inventory/movements', { limit: 40 }); },
    async reports() { store.reports = await api('/api/v1/reports', { limit: 100 }); },
    async schedules() { store.schedules = await api('/api/v1/report-schedules'); },
    async telemetry() {
      const id = $('telemetry-machine').value;
      if (!id) { store.telemetry = []; return; }
      const r = { from: range().from, to: range().to };
      // About 240 points per chart, in whole minutes.
      const step = Math.max(60, Math.ceil((Date.parse(r.to) - Date.parse(r.from)) / 1000 / 240 / 60) * 60);
      store.telemetry = await api(`/api/v1/machines/${encodeURIComponent(id)}/telemetry`, { ...r, step });
    },
  };

  /** Runs loader jobs (`name` or `name:arg`), then renders the current view. Errors are
   *  shown in a banner and never stop the dashboard. */
  async function load(jobs) {
    const run = (job) => {
      const i = job.indexOf(':');
      return i < 0 ? loaders[job]() : loaders[job.slice(0, i)](job.slice(i + 1));
    };
    // The machine list first: other loaders (intervals, telemetry) follow it.
    const results = jobs.includes('machines') ? [await run('machines').then(() => ({ status: 'fulfilled' }), (reason) => ({ status: 'rejected', reason }))] : [];
    syncMachineSelects();
    results.push(...await Promise.allSettled(jobs.filter((j) => j !== 'machines').map(run)));
    const failed = results.find((r) => r.status === 'rejected' && r.reason.status !== 401);
    const banner = $('banner');
    banner.hidden = !failed;
    banner.textContent = failed ? `Could not load everything: ${failed.reason.message}` : '';
    render();
  }

  // ==== 5. live ======================================================================

  /** What each view shows, as loader jobs (its full refetch). */
  const VIEW_JOBS = {
    overview: () => ['hierarchy', 'machines', 'kpi', 'plant', 'orders'],
    downtime: () => ['hierarchy', 'machines', 'downtime', 'intervals'],
    orders: () => ['orders', 'tasks', 'rejections'],
    inventory: () => ['levels', 'movements'],
    telemetry: () => ['machines', 'telemetry'],
    reports: () => ['reports', 'schedules'],
    losses: () => [], // losses.js loads and draws it (ADR 0058)
    spc: () => [], // spc.js loads and draws it (ADR 0056)
  };

  /** The loader jobs an update of `topic` calls for in `view` (only what it concerns). */
  function jobsFor(topic, view) {
    const i = topic.indexOf(':');
    const kind = topic.slice(0, i);
    const id = topic.slice(i + 1);
    const telemetryMachine = $('telemetry-machine').value;
    switch (`${view}/${kind}`) {
      case 'overview/hierarchy': return VIEW_JOBS.overview();
      case 'downtime/hierarchy': return VIEW_JOBS.downtime();
      case 'overview/machine': return ['machines'];
      case 'overview/kpi': return [`kpi:${id}`, 'plant'];
      case 'overview/order': return [`orders:${id}`, 'machines'];
      case 'downtime/machine': return ['machines'];
      case 'downtime/kpi': return [`downtime:${id}`, `intervals:${id}`];
      case 'orders/order': return [`orders:${id}`, 'rejections'];
      case 'orders/task': return ['tasks'];
      case 'inventory/inventory': return [`levels:${id}`, 'movements'];
      case 'telemetry/machine':
      case 'telemetry/kpi': return id === telemetryMachine ? ['telemetry'] : [];
      default: return [];
    }
  }

  const DEBOUNCE_MS = 300;
  const pending = new Set();
  let flushTimer = null;

  /** Queues jobs and runs them together after a short quiet time. */
  function schedule(jobs) {
    for (const j of jobs) pending.add(j);
    if (!pending.size || flushTimer) return;
    flushTimer = setTimeout(() => {
      flushTimer = null;
      let jobsNow = [...pending];
      pending.clear();
      // A full load of a slice covers its per-id jobs; many ids at once are also
      // cheaper as one query for all.
      for (const name of ['kpi', 'downtime', 'intervals', 'orders', 'levels']) {
        const perId = jobsNow.filter((j) => j.startsWith(`${name}:`));
        if (perId.length > 5 || jobsNow.includes(name)) {
          jobsNow = jobsNow.filter((j) => !j.startsWith(`${name}:`) && j !== name).concat([name]);
        }
      }
      load(jobsNow);
    }, DEBOUNCE_MS);
  }

  /** Refetches the whole current view (start, view change, window change, resync). */
  const refetchView = () => schedule(VIEW_JOBS[currentView]());

  /** Parses Server-Sent Events from text chunks (the subset axum sends). */
  class SseParser {
    constructor(onEvent) { this.onEvent = onEvent; this.buffer = ''; this.event = ''; this.data = []; }
    push(chunk) {
      this.buffer += chunk;
      let nl;
      while ((nl = this.buffer.search(/\r\n|\r|\n/)) >= 0) {
        // A lone \r at the end may be half of \r\n: wait for the next chunk.
        if (this.buffer[nl] === '\r' && nl === this.buffer.length - 1) break;
        const line = this.buffer.slice(0, nl);
        this.buffer = this.buffer.slice(nl + (this.buffer.startsWith('\r\n', nl) ? 2 : 1));
        this.line(line);
      }
    }
    line(line) {
      if (line === '') {
        if (this.data.length) this.onEvent(this.event || 'message', this.data.join('\n'));
        this.event = '';
        this.data = [];
        return;
      }
      if (line.startsWith(':')) return; // comment (keep-alive)
      const c = line.indexOf(':');
      const field = c < 0 ? line : line.slice(0, c);
      let value = c < 0 ? '' : line.slice(c + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'event') this.event = value;
      else if (field === 'data') this.data.push(value);
    }
  }

  /** The live connection: fetch() with the bearer header (EventSource cannot send one),
   *  reconnecting with exponential back-off and jitter, and a watchdog on silence. */
  const live = {
    controller: null,
    attempt: 0,
    retryTimer: null,
    watchdog: null,
    SILENCE_MS: 45e3, // the server sends a keep-alive every 15 s

    status(state, text) {
      const el = $('live');
      el.dataset.live = state;
      el.querySelector('.live-text').textContent = text;
    },

    start() {
      this.stop();
      this.connect();
    },

    stop() {
      clearTimeout(this.retryTimer);
      clearTimeout(this.watchdog);
      if (this.controller) this.controller.abort();
      this.controller = null;
    },

    feed() {
      clearTimeout(this.watchdog);
      this.watchdog = setTimeout(() => this.controller && this.controller.abort(new Error('silent')), this.SILENCE_MS);
    },

    async connect() {
      const controller = new AbortController();
      this.controller = controller;
      this.status(this.attempt ? 'retrying' : 'connecting', this.attempt ? 'Reconnecting…' : 'Connecting…');
      try {
        const res = await fetch('/api/v1/live', {
          headers: { Authorization: `Bearer ${token}`, Accept: 'text/event-stream' },
          cache: 'no-store',
          signal: controller.signal,
        });
        if (res.status === 401) { signOut('Your token is no longer accepted; sign in again.'); return; }
        if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
        const parser = new SseParser((event, data) => this.onEvent(event, data));
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        this.feed();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          this.feed();
          parser.push(value);
        }
      } catch (_) { /* dropped, refused or aborted: retry below unless stopped */ }
      clearTimeout(this.watchdog);
      if (this.controller !== controller || !token) return; // stopped or replaced
      const delay = Math.min(30e3, 1e3 * 2 ** this.attempt) * (0.5 + Math.random() / 2);
      this.attempt += 1;
      this.status('retrying', `Offline, retrying in ${Math.ceil(delay / 1000)} s`);
      this.retryTimer = setTimeout(() => this.connect(), delay);
    },

    onEvent(event, data) {
      if (event === 'ready') {
        this.attempt = 0;
        this.status('open', 'Live');
        refetchView(); // whatever happened while we were not listening
      } else if (event === 'resync') {
        refetchView();
      } else if (event === 'update') {
        try {
          const { topic } = JSON.parse(data);
          schedule(jobsFor(String(topic), currentView));
        } catch (_) { refetchView(); }
      }
    },
  };

  // ==== 6. views =====================================================================

  let currentView = 'overview';

  /** Renders the current view from the store. */
  function render() {
    syncMachineSelects();
    ({ overview: renderOverview, downtime: renderDowntime, orders: renderOrders,
      inventory: renderInventory, telemetry: renderTelemetry, reports: renderReports, losses: () => {},
      spc: () => {} })[currentView]();
  }

  /** Keeps the machine pickers in step with the machines. */
  function syncMachineSelects() {
    const ids = [...store.machines.keys()];
    for (const [id, withAll] of [['downtime-machine', true], ['telemetry-machine', false]]) {
      const sel = $(id);
      const want = (withAll ? ['*'] : []).concat(ids);
      const have = [...sel.options].map((o) => o.value);
      if (want.join('\n') === have.join('\n')) continue;
      const keep = sel.value;
      sel.replaceChildren(...want.map((v) => h('option', { value: v }, v === '*' ? 'All machines' : v)));
      if (want.includes(keep)) sel.value = keep;
    }
  }

  // ---- overview ----

  function renderOverview() {
    const machines = [...store.machines.values()];
    const count = (st) => machines.filter((m) => stateOf(m.current_status) === st).length;
    const p = store.plant;
    const stat = (label, value, state) => h('div', { class: 'stat', 'data-state': state },
      h('div', { class: 'label' }, state ? icon(state) : null, label), h('div', { class: 'value' }, value));
    $('plant-summary').replaceChildren(
      stat(chosenName ? `${chosenName.replace(/ \(.*\)$/, '')} OEE` : 'Plant OEE', pct(p && p.oee)),
      stat('Running', count('running'), 'running'),
      stat('Idle', count('idle'), 'idle'),
      stat('Down', count('down'), 'down'),
      stat('Good parts', num(p && p.good_count)),
      stat('Scrap', num(p && p.scrap_count)),
      stat('Downtime, all machines', p ? hours(p.downtime_minutes * 60) : '—'),
    );
    $('tiles').dataset.window = store.kpiWindow || ''; // which window the KPIs are of
    $('tiles').replaceChildren(...(machines.length ? machines.map(tile)
      : [empty('No machines yet. Register one with POST /api/v1/machines.')]));
    tickSince();
  }

  /** One machine: state, time in state and reason; current order; OEE with A/P/Q. */
  function tile(m) {
    const st = stateOf(m.current_status);
    const k = store.kpi.get(m.machine_id) || {};
    const order = m.current_order ? store.orders.get(m.current_order) : null;
    const reason = reasonName(m.reason_code && m.reason_code !== 'unclassified' ? m.reason_code : m.reason || m.reason_code);
    const bar = (letter, name, x) => h('div', { class: 'bar' },
      h('abbr', { title: name }, letter),
      h('div', { class: 'track', role: 'meter', 'aria-label': name, 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': x == null ? null : Math.round(x * 100) },
        h('span', { class: `fill ${level(x)}`, style: { width: `${Math.min(1, x || 0) * 100}%` } })),
      h('span', { class: 'pct', 'data-kpi': name.toLowerCase() }, pct(x)));
    return h('article', { class: 'tile', 'data-machine': m.machine_id, 'data-state': st, 'aria-label': `${m.machine_id}: ${STATE_LABEL[st]}` },
      h('div', { class: 'tile-head' },
        h('div', {}, h('h2', { class: 'tile-name' }, m.machine_id), h('div', { class: 'tile-meta' }, `${m.type} · line ${m.line}`)),
        stateBadge(st)),
      h('div', { class: 'tile-reason' },
        m.status_since ? h('span', {}, 'for ', h('span', { class: 'since', 'data-since': m.status_since }, '')) : h('span', { class: 'muted' }, 'no state reported'),
        reason ? h('span', { class: 'reason' }, '· ', reason) : null,
        m.planned ? h('span', { class: 'tag' }, 'planned') : null),
      h('div', { class: 'order' }, m.current_order
        ? [h('div', { class: 'order-line' },
          h('span', { class: 'ellipsis' }, 'Order ', h('b', {}, m.current_order), order ? ` · ${order.product_id}` : ''),
          h('b', { class: 'num' }, order ? pct(order.progress) : '')),
        h('div', { class: 'cellbar' }, progress(order ? order.progress : 0, `Order ${m.current_order} progress`),
          h('span', { class: 'num muted' }, order ? `${num(order.good_count)} / ${num(order.quantity)}` : ''))]
        : h('div', { class: 'order-line muted' }, 'No order running')),
      h('div', { class: 'kpis' },
        h('div', { class: 'oee' }, h('div', { class: 'value', 'data-kpi': 'oee' }, pct(k.oee)), h('div', { class: 'label' }, 'OEE')),
        h('div', { class: 'bars' }, bar('A', 'Availability', k.availability), bar('P', 'Performance', k.performance), bar('Q', 'Quality', k.quality))),
      h('div', { class: 'good-bad' },
        h('span', {}, 'Good ', h('b', { 'data-kpi': 'good' }, num(k.good_count))),
        h('span', {}, 'Scrap ', h('b', { 'data-kpi': 'scrap' }, num(k.scrap_count))),
        h('span', {}, 'Down ', h('b', {}, k.downtime_minutes == null ? '—' : duration(k.downtime_minutes * 60)))));
  }

  /** Time in state, counted on the local clock (no request). */
  function tickSince() {
    const now = Date.now();
    for (const el of document.querySelectorAll('[data-since]')) el.textContent = duration((now - Date.parse(el.dataset.since)) / 1000);
  }

  // ---- downtime ----

  /** Sums Pareto entries over machines and recomputes the shares. */
  function mergePareto(lists) {
    const acc = new Map();
    for (const e of lists.flat()) {
      const a = acc.get(e.key) || { key: e.key, stops: 0, duration_s: 0 };
      a.stops += e.stops;
      a.duration_s += e.duration_s;
      acc.set(e.key, a);
    }
    const rows = [...acc.values()].sort((a, b) => b.duration_s - a.duration_s || b.stops - a.stops);
    const total = rows.reduce((t, r) => t + r.duration_s, 0);
    let cum = 0;
    return rows.map((r) => ({ ...r, cumulative_share: total ? (cum += r.duration_s) / total : null }));
  }

  function renderDowntime() {
    const sel = $('downtime-machine').value || '*';
    const basis = $('downtime-basis').value;
    const reports = [...store.downtime.values()].filter((r) => sel === '*' || r.machine_id === sel);
    $('pareto-reason').replaceChildren(paretoChart(mergePareto(reports.map((r) => r[`pareto_by_reason_${basis}`])), 'reason', reasonName));
    $('pareto-loss').replaceChildren(paretoChart(mergePareto(reports.map((r) => r[`pareto_by_loss_${basis}`])), 'loss category', lossName));
    const ids = [...store.machines.keys()].filter((id) => sel === '*' || id === sel);
    $('gantt').replaceChildren(gantt(ids));
    $('reliability').replaceChildren(reports.length ? table(
      [['Machine'], ['Stops', 'n'], ['Downtime', 'n'], ['Failures', 'n'], ['MTBF', 'n'], ['MTTR', 'n'], ['Micro-stops', 'n'], ['No data', 'n']],
      reports.map((r) => h('tr', {},
        h('td', {}, r.machine_id), h('td', { class: 'n' }, num(r.stops)), h('td', { class: 'n' }, duration(r.downtime_s)),
        h('td', { class: 'n' }, num(r.failures)), h('td', { class: 'n' }, duration(r.mtbf_s)), h('td', { class: 'n' }, duration(r.mttr_s)),
        h('td', { class: 'n' }, `${num(r.micro_stops.count)} · ${duration(r.micro_stops.duration_s)}`),
        h('td', { class: 'n' }, duration(r.unknown_time_s)))),
    ) : empty('No machines.'));
  }

  /** A Pareto chart: bars of stop time, longest first, and the cumulative share. */
  function paretoChart(rows, what, nameOf) {
    if (!rows.length) return empty(`No unplanned stops in this window.`);
    const top = rows.slice(0, 10).map((r) => ({ ...r, key: nameOf(r.key) }));
    const W = 640, H = 300, L = 96, R = 44, T = 14, B = 78;
    const longest = Math.max(...top.map((r) => r.duration_s)) || 60;
    const step = timeStep(longest);
    const max = step * Math.ceil(longest / step);
    const bw = (W - L - R) / top.length;
    const y = (v) => T + (H - T - B) * (1 - v / max);
    const yc = (f) => T + (H - T - B) * (1 - f);
    const g = s('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img',
      'aria-label': `Pareto by ${what}: ${top.map((r) => `${r.key} ${duration(r.duration_s)}`).join(', ')}` });
    for (let v = 0; v <= max + 1e-9; v += step) {
      g.append(s('line', { class: 'grid', x1: L, x2: W - R, y1: y(v), y2: y(v) }),
        s('text', { x: L - 6, y: y(v) + 4, 'text-anchor': 'end' }, timeLabel(v, step)));
    }
    for (let i = 0; i <= 4; i++) g.append(s('text', { x: W - R + 6, y: yc(i / 4) + 4 }, `${i * 25}%`));
    top.forEach((r, i) => {
      const x = L + i * bw + bw * 0.15;
      g.append(
        s('rect', { class: 'bar-down', x, y: y(r.duration_s), width: bw * 0.7, height: H - B - y(r.duration_s), rx: 3 },
          s('title', {}, `${r.key}: ${duration(r.duration_s)} in ${r.stops} stop(s)`)),
        s('text', { class: 'label-strong', x: x + bw * 0.35, y: H - B + 14, 'text-anchor': 'end',
          transform: `rotate(-30 ${x + bw * 0.35} ${H - B + 14})` }, r.key.length > 18 ? `${r.key.slice(0, 17)}…` : r.key));
    });
    const pts = top.map((r, i) => `${L + i * bw + bw / 2},${yc(r.cumulative_share || 0)}`);
    g.append(s('polyline', { class: 'cum', points: pts.join(' ') }),
      ...top.map((r, i) => s('circle', { class: 'cum-dot', cx: L + i * bw + bw / 2, cy: yc(r.cumulative_share || 0), r: 3.5 })),
      s('line', { class: 'axis', x1: L, x2: W - R, y1: H - B, y2: H - B }));
    return h('div', {}, g, h('div', { class: 'legend' },
      h('span', { class: 'key' }, s('svg', { viewBox: '0 0 20 10', 'aria-hidden': 'true' }, s('rect', { x: 2, y: 1, width: 16, height: 8, fill: 'var(--down)' })), 'stop time'),
      h('span', { class: 'key' }, s('svg', { viewBox: '0 0 20 10', 'aria-hidden': 'true' }, s('line', { x1: 1, x2: 19, y1: 5, y2: 5, stroke: 'var(--accent)', 'stroke-width': 2 })), 'cumulative share')));
  }

  /** Pattern fills so that states differ by more than colour. */
  function ganttDefs() {
    const pattern = (id, color, mark) => s('pattern', { id, width: 8, height: 8, patternUnits: 'userSpaceOnUse', patternTransform: 'rotate(45)' },
      s('rect', { width: 8, height: 8, fill: color }), mark);
    return s('defs', {},
      pattern('p-running', 'var(--running)', null),
      pattern('p-idle', 'var(--idle)', s('circle', { cx: 4, cy: 4, r: 1.4, fill: 'rgba(11,15,20,.45)' })),
      pattern('p-down', 'var(--down)', s('rect', { width: 3, height: 8, fill: 'rgba(11,15,20,.35)' })),
      pattern('p-planned', 'var(--planned)', s('rect', { width: 8, height: 2, fill: 'rgba(11,15,20,.35)' })),
      pattern('p-unknown', '#39424e', null));
  }

  /** Time-axis ticks for [from, to] (ms): a round step giving at most 9 ticks, aligned
   *  on local midnight. */
  function ticks(from, to) {
    const steps = [5, 15, 30, 60, 120, 180, 360, 720, 1440, 2880, 10080].map((m) => m * 60e3);
    const step = steps.find((st) => (to - from) / st <= 9) || steps[steps.length - 1];
    const midnight = new Date(from);
    midnight.setHours(0, 0, 0, 0);
    const out = [];
    for (let t = +midnight + Math.ceil((from - midnight) / step) * step; t <= to; t += step) out.push(t);
    return { step, at: out };
  }

  /** The timeline of each machine's states over the window. */
  function gantt(ids) {
    if (!ids.length) return empty('No machines.');
    const from = +win.from, to = +(win.to || new Date());
    const W = 1200, L = 150, R = 12, T = 8, rowH = 30, gap = 8, axisH = 26;
    const H = T + ids.length * (rowH + gap) + axisH;
    const x = (t) => L + ((Math.min(Math.max(t, from), to) - from) / (to - from)) * (W - L - R);
    const g = s('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `State timeline of ${ids.length} machine(s)` }, ganttDefs());
    const tk = ticks(from, to);
    for (const t of tk.at) {
      const d = new Date(t);
      g.append(s('line', { class: 'grid', x1: x(t), x2: x(t), y1: T, y2: H - axisH }),
        s('text', { x: x(t), y: H - 8, 'text-anchor': 'middle' }, tk.step >= 1440 * 60e3 ? d.toLocaleDateString(undefined, { day: 'numeric', month: 'short' }) : hhmm(d)));
    }
    ids.forEach((id, row) => {
      const y0 = T + row * (rowH + gap);
      g.append(s('text', { class: 'label-strong', x: L - 10, y: y0 + rowH / 2 + 5, 'text-anchor': 'end' }, id),
        s('rect', { x: L, y: y0, width: W - L - R, height: rowH, fill: 'url(#p-unknown)', rx: 3 }));
      for (const iv of store.intervals.get(id) || []) {
        const a = Date.parse(iv.start), b = iv.end ? Date.parse(iv.end) : to;
        if (b <= from || a >= to) continue;
        const st = iv.planned && iv.state !== 'running' ? 'planned' : stateOf(iv.state);
        const reason = reasonName(iv.final_reason_code || iv.reason || '');
        g.append(s('rect', { x: x(a), y: y0, width: Math.max(1, x(b) - x(a)), height: rowH, fill: `url(#p-${st})` },
          s('title', {}, `${id}: ${STATE_LABEL[stateOf(iv.state)]}${iv.planned ? ' (planned)' : ''}${reason ? ` · ${reason}` : ''} · ${dateTime(a)}–${iv.end ? dateTime(b) : 'now'} (${duration((Math.min(b, to) - Math.max(a, from)) / 1000)})`)));
      }
    });
    const key = (st, label) => h('span', { class: 'key' }, s('svg', { viewBox: '0 0 24 12', 'aria-hidden': 'true' }, s('rect', { width: 24, height: 12, fill: `url(#p-${st})` })), label);
    // The legend's swatches use the chart's patterns (same document).
    return h('div', {}, g, h('div', { class: 'legend' },
      key('running', 'Running'), key('idle', 'Idle (dots)'), key('down', 'Down (stripes)'), key('planned', 'Planned stop (bars)'), key('unknown', 'No data')));
  }

  // ---- orders & maintenance ----

  const ORDER_RANK = { in_progress: 0, on_hold: 1, assigned: 2, created: 3, completed: 4, cancelled: 5 };
  const ORDER_PILL = { in_progress: ['ok', 'running', 'In progress'], on_hold: ['warn', 'idle', 'On hold'], assigned: ['info', 'clock', 'Assigned'],
    created: ['', 'clock', 'Created'], completed: ['ok', 'check', 'Completed'], cancelled: ['bad', 'down', 'Cancelled'] };
  const pill = ([cls, ic, text]) => h('span', { class: `pill ${cls}` }, icon(ic), text);

  function renderOrders() {
    const orders = [...store.orders.values()].sort((a, b) =>
      (ORDER_RANK[a.status] ?? 9) - (ORDER_RANK[b.status] ?? 9) || String(b.created_at).localeCompare(String(a.created_at))).slice(0, 60);
    $('orders-table').replaceChildren(orders.length ? h('div', { class: 'scroll' }, table(
      [['Order'], ['Product'], ['Machine'], ['Status'], ['Progress'], ['Good', 'n'], ['Scrap', 'n'], ['Yield', 'n']],
      orders.map((o) => h('tr', { 'data-order': o.order_id },
        h('td', {}, h('b', {}, o.order_id)), h('td', {}, o.product_id), h('td', {}, o.assigned_machine || '—'),
        h('td', {}, pill(ORDER_PILL[o.status] || ['', 'unknown', o.status])),
        h('td', {}, h('div', { class: 'cellbar' }, progress(o.progress, `Order ${o.order_id} progress`),
          h('span', { class: 'num' }, `${num(o.good_count)} / ${num(o.quantity)}`))),
        h('td', { class: 'n' }, num(o.good_count)), h('td', { class: 'n' }, num(o.scrap_count)),
        h('td', { class: 'n' }, pct(o.production_yield, 1)))))) : empty('No production orders.'));

    const open = store.tasks.filter((t) => t.status === 'scheduled' || t.status === 'in_progress');
    const now = Date.now();
    $('tasks-table').replaceChildren(open.length ? h('div', { class: 'scroll' }, table(
      [['Due'], ['Machine'], ['Kind'], ['What'], ['Status']],
      open.map((t) => {
        const due = Date.parse(t.scheduled_date);
        return h('tr', { 'data-task': t.task_id },
          h('td', { class: 'num nowrap' }, dateTime(due), h('div', { class: 'muted' }, due < now ? `${duration((now - due) / 1000)} ago` : `in ${duration((due - now) / 1000)}`)),
          h('td', {}, t.machine_id), h('td', {}, t.kind), h('td', {}, t.description || '—'),
          h('td', {}, t.overdue ? pill(['bad', 'clock', 'Overdue']) : t.status === 'in_progress' ? pill(['info', 'running', 'In progress']) : pill(['', 'clock', 'Due'])));
      }))) : empty('Nothing due.'));

    const alerts = store.tasks.filter((t) => t.kind === 'predictive' && t.evidence)
      .sort((a, b) => String(b.scheduled_at).localeCompare(String(a.scheduled_at))).slice(0, 12);
    $('alerts').replaceChildren(...(alerts.length ? alerts.map(alertCard) : [empty('No predictive alerts.')]));

    $('rejections').replaceChildren(store.rejections.length ? h('div', { class: 'scroll' }, table(
      [['When'], ['For'], ['Why'], ['Log position', 'n']],
      store.rejections.map((r) => h('tr', { 'data-rejection': r.command_id },
        h('td', { class: 'num nowrap' }, dateTime(r.recorded_at)), h('td', {}, r.target),
        h('td', {}, r.reason), h('td', { class: 'n' }, num(r.position)))))) : empty('Nothing refused.'));
  }

  /** The reports (newest first, corrected versions beside the ones they supersede) and
   *  the schedules. Files are fetched with the token, then saved. */
  function renderReports() {
    const scope = (r) => (r.kind === 'order' ? `order ${r.order_id}` : r.line ? `line ${r.line}` : 'whole site');
    $('reports-table').replaceChildren(store.reports.length ? h('div', { class: 'scroll' }, table(
      [['Report'], ['Kind'], ['Scope'], ['Period'], ['Format'], ['Version'], ['Log position', 'n'], ['']],
      store.reports.map((r) => {
        const verified = h('span', { class: 'muted' }, store.verified.get(r.report_id) || '');
        return h('tr', { 'data-report': r.report_id },
          h('td', {}, h('b', {}, r.report_id), h('div', { class: 'muted' }, r.requested_by)),
          h('td', {}, r.kind), h('td', {}, scope(r)),
          h('td', { class: 'num nowrap' }, dateTime(Date.parse(r.from)), ' – ', dateTime(Date.parse(r.to))),
          h('td', {}, r.format),
          h('td', {}, r.superseded_by ? pill(['warn', 'clock', `v${r.version} · superseded by ${r.superseded_by}`])
            : r.supersedes ? pill(['info', 'running', `v${r.version} · corrects ${r.supersedes}`]) : `v${r.version}`),
          h('td', { class: 'n' }, num(r.position)),
          h('td', { class: 'nowrap' },
            h('button', { type: 'button', class: 'ghost', onclick: () => downloadReport(r) }, 'Download'), ' ',
            h('button', { type: 'button', class: 'ghost', onclick: () => verifyReport(r) }, 'Verify'), ' ', verified));
      }))) : empty('No reports yet.'));
    $('schedules-table').replaceChildren(store.schedules.length ? h('div', { class: 'scroll' }, table(
      [['Schedule'], ['Trigger'], ['Line'], ['Format'], ['At (local)'], ['Delivered to']],
      store.schedules.map((sc) => h('tr', { 'data-schedule': sc.schedule_id },
        h('td', {}, h('b', {}, sc.schedule_id)), h('td', {}, sc.trigger), h('td', {}, sc.line || 'whole site'),
        h('td', {}, sc.format), h('td', { class: 'num' }, sc.at_local),
        h('td', {}, (sc.channels || []).map((c) => c.url || (c.to || []).join(', ')).join(' · ') || '—'))))) : empty('No schedules.'));
  }

  async function downloadReport(r) {
    const res = await fetch(`/api/v1/reports/${encodeURIComponent(r.report_id)}/content`, { headers: { Authorization: `Bearer ${token}` }, cache: 'no-store' });
    if (!res.ok) { $('report-status').textContent = `Download failed: HTTP ${res.status}`; return; }
    const url = URL.createObjectURL(await res.blob());
    const ext = { pdf: 'pdf', csv: 'zip', json: 'json' }[r.format] || 'bin';
    const a = h('a', { href: url, download: `${r.report_id}.${ext}` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10e3);
  }

  /** Verifies a report; the outcome is kept in the store, so a re-render keeps it. */
  async function verifyReport(r) {
    store.verified.set(r.report_id, 'verifying…');
    render();
    try {
      const v = await api(`/api/v1/reports/${encodeURIComponent(r.report_id)}/verify`);
      store.verified.set(r.report_id, v.identical ? 'identical' : 'NOT identical');
    } catch (e) { store.verified.set(r.report_id, e.message); }
    render();
  }

  async function generateReport(e) {
    e.preventDefault();
    const kind = $('report-kind').value;
    const body = kind === 'order'
      ? { kind, order_id: $('report-order').value.trim(), format: $('report-format').value }
      : { kind, line: $('report-line').value.trim() || null, from: range().from, to: range().to, format: $('report-format').value };
    $('report-status').textContent = 'Generating…';
    const res = await fetch('/api/v1/reports', { method: 'POST', headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    let answer = {};
    try { answer = await res.json(); } catch (_) { /* no body */ }
    $('report-status').textContent = res.ok ? `Generated ${answer.report_id} at log position ${answer.position}.`
      : [answer.title, answer.detail].filter(Boolean).join(': ') || `HTTP ${res.status}`;
    if (res.ok) schedule(['reports']);
  }

  /** A predictive alert with what the detector saw. */
  function alertCard(t) {
    const e = t.evidence;
    const row = (k, v) => [h('dt', {}, k), h('dd', {}, v)];
    return h('div', { class: 'alert', 'data-task': t.task_id },
      h('h3', {}, icon('wave'), `${t.machine_id} · ${e.sensor}`, pill(t.status === 'completed' ? ['ok', 'check', 'Done'] : t.overdue ? ['bad', 'clock', 'Overdue'] : ['warn', 'clock', `Due ${dateTime(t.scheduled_date)}`])),
      h('dl', {},
        row('Observed', num(e.observed_value, 2)),
        row('Baseline', `${num(e.baseline_mean, 2)} ± ${num(e.baseline_std_dev, 2)}`),
        row('Deviation', `${num(e.deviation_sigma, 1)} σ`),
        row('Samples', `${num(e.samples)} · ${dateTime(e.window_start)}–${dateTime(e.window_end)}`),
        Object.entries(e.details || {}).map(([k, v]) => row(k, typeof v === 'number' ? num(v, 3) : typeof v === 'string' ? v : JSON.stringify(v)))));
  }

  // ---- inventory ----

  function renderInventory() {
    const max = new Map();
    for (const l of store.levels) max.set(l.item_id, Math.max(max.get(l.item_id) || 0, l.quantity));
    let last = null;
    $('levels').replaceChildren(store.levels.length ? h('div', { class: 'scroll' }, table(
      [['Item'], ['Type'], ['Location'], ['Quantity', 'n'], ['Share of the item\'s largest stock']],
      store.levels.map((l) => {
        const first = l.item_id !== last;
        last = l.item_id;
        return h('tr', { class: first ? 'group' : null, 'data-item': l.item_id },
          h('td', {}, first ? h('b', {}, l.item_id) : ''), h('td', {}, first ? pill([l.item_type === 'raw' ? 'info' : 'ok', 'box', l.item_type]) : ''),
          h('td', {}, l.location), h('td', { class: 'n' }, num(l.quantity, 3)),
          h('td', { class: 'barcell' }, progress(max.get(l.item_id) ? l.quantity / max.get(l.item_id) : 0, `${l.item_id} at ${l.location}`)));
      }))) : empty('No stock recorded.'));

    $('movements').replaceChildren(store.movements.length ? h('div', { class: 'scroll' }, table(
      [['When'], ['Item'], ['Location'], ['Change', 'n'], ['Level', 'n'], ['Why']],
      store.movements.map((m) => h('tr', {},
        h('td', { class: 'num' }, dateTime(m.at)), h('td', {}, m.item_id), h('td', {}, m.location || '—'),
        h('td', { class: `n ${m.delta < 0 ? 'neg' : 'pos'}` }, m.delta < 0 ? '− ' : '+ ', num(Math.abs(m.delta), 3)),
        h('td', { class: 'n' }, num(m.new_level, 3)),
        h('td', {}, [m.kind.replace(/_/g, ' '), m.order_id ? ` · ${m.order_id}` : '', m.reason ? ` · ${m.reason}` : ''].join(''),
          m.shortage > 0 ? [' ', pill(['bad', 'down', `short ${num(m.shortage, 3)}`])] : null))))) : empty('No movements.'));
  }

  // ---- lot trace (ADR 0057) ----

  async function traceLot(e) {
    e.preventDefault();
    const item = $('trace-item').value.trim(), lot = $('trace-lot').value.trim();
    const asOf = $('trace-asof').value;
    if (!item || !lot) return;
    $('trace').replaceChildren(empty('Tracing…'));
    try {
      const path = `/api/v1/lots/${encodeURIComponent(item)}/${encodeURIComponent(lot)}/${$('trace-dir').value}`;
      const t = await api(path, asOf ? { as_of: new Date(asOf).toISOString() } : {});
      $('trace').replaceChildren(renderTrace(t));
    } catch (err) {
      $('trace').replaceChildren(empty(err.status === 404 ? 'No such lot (then).' : err.message));
    }
  }

  const SHOWN = 500;

  /** A trace: its lots by depth, each with who and what made it and where it is. */
  function renderTrace(t) {
    const status = (s) => pill([s === 'available' ? 'ok' : s === 'held' ? 'warn' : 'bad', 'box', s]);
    const stock = (l) => (l.stock || []).map((s) => `${s.location} ${num(s.quantity, 3)}`).join(', ') || '—';
    return h('div', {},
      h('p', { class: 'muted' }, `${t.lots.length} lots, depth ${t.depth}, ${t.edges.length} links`,
        t.as_of ? ` · as of ${dateTime(t.as_of)}` : ''),
      h('div', { class: 'scroll' }, table(
        [['Depth', 'n'], ['Item'], ['Lot'], ['Status'], ['Supplier lot'], ['Order'], ['Machine'], ['Operators'], ['Produced'], ['Stock']],
        t.lots.slice(0, SHOWN).map((l) => h('tr', {},
          h('td', { class: 'n' }, String(l.depth)), h('td', {}, l.item_id),
          h('td', {}, `${'· '.repeat(l.depth)}${l.lot_id}`), h('td', {}, status(l.status)),
          h('td', {}, l.supplier_lot || '—'), h('td', {}, l.order_id || '—'), h('td', {}, l.machine_id || '—'),
          h('td', {}, (l.operators || []).join(', ') || '—'),
          h('td', {}, l.produced_from ? `${dateTime(l.produced_from)} – ${dateTime(l.produced_to)}` : '—'),
          h('td', {}, stock(l)))))),
      t.lots.length > SHOWN ? empty(`The first ${SHOWN} of ${t.lots.length} lots.`) : null);
  }

  // ---- telemetry ----

  const UNITS = [[/_c$/, '°C'], [/_mm_s$/, 'mm/s'], [/_bar$/, 'bar'], [/_rpm$/, 'rpm'], [/_a$/, 'A'], [/_v$/, 'V'], [/_pct$/, '%']];
  const unitOf = (sensor) => (UNITS.find(([re]) => re.test(sensor)) || [null, ''])[1];

  function renderTelemetry() {
    const bySensor = new Map();
    for (const p of store.telemetry) {
      if (!bySensor.has(p.sensor)) bySensor.set(p.sensor, []);
      bySensor.get(p.sensor).push(p);
    }
    $('telemetry-charts').replaceChildren(...(bySensor.size
      ? [...bySensor].map(([sensor, pts]) => h('article', { class: 'card' }, sensorChart(sensor, pts)))
      : [empty($('telemetry-machine').value ? 'No telemetry in this window.' : 'No machines.')]));
  }

  /** One sensor: the min–max band of each bucket and its average. */
  function sensorChart(sensor, pts) {
    const unit = unitOf(sensor);
    const W = 720, H = 260, L = 58, R = 14, T = 12, B = 28;
    const from = +win.from, to = +(win.to || new Date());
    const lo = Math.min(...pts.map((p) => p.min)), hi = Math.max(...pts.map((p) => p.max));
    const step = niceStep((hi - lo) * 1.1 || 1);
    const y0 = Math.floor(lo / step) * step, y1 = Math.max(Math.ceil(hi / step) * step, y0 + step);
    const x = (t) => L + ((t - from) / (to - from)) * (W - L - R);
    const y = (v) => T + (1 - (v - y0) / (y1 - y0)) * (H - T - B);
    const t = (p) => Date.parse(p.bucket);
    const last = pts[pts.length - 1];
    const g = s('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img',
      'aria-label': `${sensor}: latest average ${num(last.avg, 2)} ${unit}, range ${num(lo, 2)} to ${num(hi, 2)}` });
    for (let v = y0; v <= y1 + step / 1e6; v += step) {
      g.append(s('line', { class: 'grid', x1: L, x2: W - R, y1: y(v), y2: y(v) }), s('text', { x: L - 6, y: y(v) + 4, 'text-anchor': 'end' }, num(v, 2)));
    }
    for (const tt of ticks(from, to).at) g.append(s('text', { x: x(tt), y: H - 8, 'text-anchor': 'middle' }, hhmm(new Date(tt))));
    const band = pts.map((p) => `${x(t(p))},${y(p.max)}`).concat(pts.slice().reverse().map((p) => `${x(t(p))},${y(p.min)}`));
    g.append(s('polygon', { points: band.join(' '), fill: 'var(--accent)', 'fill-opacity': 0.18 }),
      s('polyline', { points: pts.map((p) => `${x(t(p))},${y(p.avg)}`).join(' '), fill: 'none', stroke: 'var(--accent)', 'stroke-width': 2 }),
      s('line', { class: 'axis', x1: L, x2: W - R, y1: H - B, y2: H - B }));
    return [h('h2', {}, `${sensor} `, h('span', { class: 'muted' }, `· now ${num(last.avg, 2)} ${unit}`)), g,
      h('div', { class: 'legend' }, h('span', {}, 'line: average per bucket · band: minimum to maximum'))];
  }

  // ==== 7. shell =====================================================================

  const VIEWS = Object.keys(VIEW_JOBS);

  /** Shows a view (from the URL hash) and loads it. */
  function showView() {
    const name = location.hash.slice(1);
    currentView = VIEWS.includes(name) ? name : 'overview';
    for (const v of VIEWS) $(`view-${v}`).hidden = v !== currentView;
    for (const a of document.querySelectorAll('nav a')) {
      if (a.dataset.view === currentView) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    refetchView();
  }

  async function changeWindow() {
    win.kind = $('window').value;
    localStorage.setItem(WINDOW_KEY, win.kind);
    $('custom-range').hidden = win.kind !== 'custom';
    if (win.kind === 'custom' && !$('from').value) {
      const local = (d) => new Date(d - d.getTimezoneOffset() * 60e3).toISOString().slice(0, 16);
      $('from').value = local(new Date(Date.now() - 8 * HOUR));
      $('to').value = local(new Date());
    }
    await resolveWindow();
    refetchView();
    window.dispatchEvent(new Event('shopfloor:window'));
  }

  let lastTick = new Date();
  /** Every second: the clock and times in state; at quarter hours, the window bounds. */
  function tick() {
    const now = new Date();
    $('clock').textContent = `${hhmm(now)}:${pad(now.getSeconds())}`;
    $('clock').dateTime = now.toISOString();
    tickSince();
    const quarter = (d) => Math.floor(d / (15 * 60e3));
    if (quarter(now) !== quarter(lastTick) && (win.kind === 'shift' || win.kind === 'today')) resolveWindow().then(refetchView);
    lastTick = now;
  }

  function showApp() {
    $('signin').hidden = true;
    $('app').hidden = false;
    $('window').value = win.kind;
    $('custom-range').hidden = win.kind !== 'custom';
    loaders.reasons().then(render, () => {}); // names only; codes are shown without them
    resolveWindow().then(() => { showView(); live.start(); });
  }

  function signOut(message) {
    token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    live.stop();
    $('app').hidden = true;
    $('signin').hidden = false;
    $('signin-error').textContent = message || '';
    $('token').value = '';
    $('token').focus();
  }

  async function signIn(ev) {
    ev.preventDefault();
    const candidate = $('token').value.trim();
    const err = $('signin-error');
    err.textContent = '';
    try {
      await api('/api/v1/machines', null, candidate);
    } catch (e) {
      err.textContent = e.status === 401 ? 'This token is not accepted.'
        : e.status === 403 ? 'This token may not read the plant.' : `Cannot reach Shopfloor: ${e.message}`;
      return;
    }
    token = candidate;
    sessionStorage.setItem(TOKEN_KEY, token);
    showApp();
  }

  function start() {
    $('signin-form').addEventListener('submit', signIn);
    $('signout').addEventListener('click', () => signOut());
    $('window').addEventListener('change', changeWindow);
    $('node').addEventListener('change', () => {
      chosenNode = $('node').value;
      localStorage.setItem(NODE_KEY, chosenNode);
      const o = $('node').options[$('node').selectedIndex];
      chosenName = chosenNode && o ? o.textContent.trim() : '';
      refetchView();
      window.dispatchEvent(new Event('shopfloor:window'));
    });
    $('window-form').addEventListener('submit', (e) => { e.preventDefault(); changeWindow(); });
    $('downtime-machine').addEventListener('change', render);
    $('downtime-basis').addEventListener('change', render);
    $('telemetry-machine').addEventListener('change', () => schedule(['telemetry']));
    $('report-form').addEventListener('submit', generateReport);
    $('trace-form').addEventListener('submit', traceLot);
    window.addEventListener('hashchange', () => token && showView());
    tick();
    setInterval(tick, 1000);
    if (token) showApp();
    else signOut();
  }

  start();
})();
