// The Losses view (ADR 0058): the ISO 22400-2 KPI catalogue of the plant and each machine,
// and the changeovers with their setup time per product pair and its trend. An ES module on
// its own, like andon.js and spc.js: app.js only shows and hides <section id="view-losses">
// and shares its KPI window (window.shopfloor.range); this module loads whenever the
// section becomes visible and every 30 s while it stays so.
//
// Accessibility: plain tables with captions and column headers; the trend is stated in
// words ("shorter by 90 s per changeover"), not by colour or an arrow alone.

const TOKEN_KEY = 'shopfloor.token';
const RELOAD_MS = 30e3;
const $ = (id) => document.getElementById(id);

function h(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v != null && v !== false) e.setAttribute(k, String(v));
  for (const c of children) if (c != null) e.append(c);
  return e;
}
const pct = (x) => (x == null || !Number.isFinite(x) ? '—' : `${(x * 100).toFixed(1)} %`);
const num = (x, d = 0) => (x == null || !Number.isFinite(x) ? '—' : Number(x).toLocaleString(undefined, { maximumFractionDigits: d }));
function dur(s) {
  if (s == null || !Number.isFinite(s)) return '—';
  const m = Math.round(s / 60);
  return m >= 60 ? `${Math.floor(m / 60)} h ${m % 60} min` : `${m} min`;
}

async function api(path, params) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) return null;
  const qs = new URLSearchParams(Object.entries(params || {}).filter(([, v]) => v != null)).toString();
  const res = await fetch(`${path}${qs ? `?${qs}` : ''}`, { headers: { Authorization: `Bearer ${token}`, Accept: 'application/json' }, cache: 'no-store' });
  if (!res.ok) {
    const problem = await res.json().catch(() => ({}));
    throw new Error(problem.detail || `HTTP ${res.status}`);
  }
  return res.json();
}

function range() {
  const shared = window.shopfloor && window.shopfloor.range && window.shopfloor.range();
  if (shared) return shared;
  const now = new Date();
  return { from: new Date(now - 24 * 3600e3).toISOString(), to: now.toISOString() };
}

const ISO_COLUMNS = [
  ['Machine', (r) => (r.machine_id === '*' ? `Plant (${r.machine_count})` : r.machine_id)],
  ['TEEP', (r) => pct(r.teep)], ['OEE', (r) => pct(r.oee)], ['NEE', (r) => pct(r.nee)],
  ['Availability', (r) => pct(r.availability)], ['Setup ratio', (r) => pct(r.setup_ratio)],
  ['Allocation ratio', (r) => pct(r.allocation_ratio)], ['Parts / h', (r) => num(r.throughput_rate_per_h, 1)],
  ['First pass yield', (r) => pct(r.first_pass_yield)], ['Scrap ratio', (r) => pct(r.scrap_ratio)],
  ['MTTF', (r) => dur(r.mttf_s)], ['MTTR', (r) => dur(r.mttr_s)], ['MTBF', (r) => dur(r.mtbf_s)],
  ['Worker efficiency', (r) => pct(r.worker_efficiency)],
];

function table(caption, columns, rows, key) {
  if (!rows.length) return h('p', { class: 'muted' }, `${caption}: none in this window.`);
  return h('table', {},
    h('caption', { class: 'sr-only' }, caption),
    h('thead', {}, h('tr', {}, ...columns.map(([t]) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, ...rows.map((r) => {
      const tr = h('tr', key ? key(r) : {});
      columns.forEach(([, f], i) => tr.append(h(i === 0 ? 'th' : 'td', i === 0 ? { scope: 'row' } : { class: 'n' }, f(r))));
      return tr;
    })));
}

function trend(s) {
  const t = s.trend_s_per_changeover;
  if (t == null) return '—';
  if (Math.abs(t) < 1) return 'steady';
  return `${t < 0 ? 'shorter' : 'longer'} by ${num(Math.abs(t))} s per changeover`;
}

/** A changeover's products in words: "A → B", or what is known of them. */
function pair(x) {
  if (!x.from_product && !x.to_product) return 'no order (setup stop)';
  return `${x.from_product || 'first product'} → ${x.to_product || 'unknown'}`;
}

const PAIR_COLUMNS = [
  ['From → to', pair],
  ['Count', (s) => num(s.count)], ['Mean', (s) => dur(s.mean_s)], ['Min', (s) => dur(s.min_s)],
  ['Max', (s) => dur(s.max_s)], ['Last', (s) => dur(s.last_s)], ['Trend', trend],
];
const LIST_COLUMNS = [
  ['Machine', (c) => c.machine_id], ['From → to', pair],
  ['Started', (c) => new Date(c.start).toLocaleString()],
  ['Setup time', (c) => `${dur(c.duration_s)}${c.ongoing ? ' (ongoing)' : ''}`],
  ['Opened by', (c) => (c.trigger === 'product_change' ? `order ${c.to_order || ''}` : 'setup stop')],
];

let timer = 0;
async function load() {
  clearTimeout(timer);
  if ($('view-losses').hidden || !sessionStorage.getItem(TOKEN_KEY)) return;
  try {
    const r = range();
    const [plant, machines, changeovers] = await Promise.all([
      api('/api/v1/kpi-catalogue', { ...r, rollup: 'true' }),
      api('/api/v1/kpi-catalogue', r),
      api('/api/v1/changeovers', r),
    ]);
    $('iso-table').replaceChildren(table('ISO 22400-2 KPIs, plant and machines', ISO_COLUMNS,
      [...(plant || []), ...(machines || [])], (row) => ({ 'data-machine': row.machine_id })));
    $('changeover-pairs').replaceChildren(table('Setup time by product pair', PAIR_COLUMNS, changeovers ? changeovers.by_pair : []));
    $('changeover-list').replaceChildren(table('Changeovers, newest first', LIST_COLUMNS,
      changeovers ? changeovers.changeovers.slice().sort((a, b) => b.start.localeCompare(a.start)) : []));
    $('losses-status').textContent = '';
  } catch (e) {
    $('losses-status').textContent = `Could not load: ${e.message}`;
  }
  timer = setTimeout(load, RELOAD_MS);
}

if ($('view-losses')) {
  new MutationObserver(() => { if (!$('view-losses').hidden) load(); })
    .observe($('view-losses'), { attributes: true, attributeFilter: ['hidden'] });
  window.addEventListener('shopfloor:window', load);
  load();
}
