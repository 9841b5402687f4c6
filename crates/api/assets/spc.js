// The SPC view (ADR 0056): a characteristic's control chart drawn in SVG, its limits,
// capability and signals. An ES module on its own, like andon.js: app.js only shows and
// hides <section id="view-spc">; this module loads whenever the section becomes visible and
// every 15 s while it stays so (the live feed's `spc:{id}` topics are not followed yet). It
// follows the bearer token in sessionStorage.
//
// Accessibility: each chart is an <svg role="img"> named by its <title> and described by a
// <desc> that states the limits and the signals in words; the points are also listed in the
// signals table below, so nothing is conveyed by colour alone (out-of-control points are
// drawn as larger diamonds as well as in red).

const TOKEN_KEY = 'shopfloor.token';
const RELOAD_MS = 15e3;
const SVG_NS = 'http://www.w3.org/2000/svg';
const $ = (id) => document.getElementById(id);

function el(ns, tag, attrs, children) {
  const e = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v != null && v !== false) e.setAttribute(k, String(v));
  for (const c of children || []) if (c != null) e.append(c);
  return e;
}
const h = (tag, attrs, ...children) => el(null, tag, attrs, children);
const s = (tag, attrs, ...children) => el(SVG_NS, tag, attrs, children);
const fmt = (x, d = 3) => (x == null || !Number.isFinite(x) ? '—' : Number(x).toLocaleString(undefined, { maximumFractionDigits: d }));

async function api(path) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) return null;
  const res = await fetch(path, { headers: { Authorization: `Bearer ${token}`, Accept: 'application/json' }, cache: 'no-store' });
  if (!res.ok) {
    const problem = await res.json().catch(() => ({}));
    throw new Error(problem.detail || `HTTP ${res.status}`);
  }
  return res.json();
}

const CHART = { xbar_r: ['X̄', 'R'], xbar_s: ['X̄', 'S'], imr: ['X', 'MR'], p: ['p'], np: ['np'], c: ['c'], u: ['u'] };

/** One chart: the points of `value(p)` against the band `band(p)` (null: no limits yet). */
function drawChart(title, points, value, band, flagged) {
  const W = 760, H = 240, L = 64, R = 16, T = 12, B = 28;
  const vals = points.map(value).filter((v) => v != null);
  const bands = points.map(band).filter(Boolean);
  const all = vals.concat(bands.flatMap((b) => [b.ucl, b.lcl, b.center]));
  if (!vals.length) return h('p', { class: 'muted' }, `${title}: no points yet.`);
  let lo = Math.min(...all), hi = Math.max(...all);
  if (hi === lo) { hi += 1; lo -= 1; }
  const pad = (hi - lo) * 0.08;
  lo -= pad; hi += pad;
  const n = points.length;
  const x = (i) => L + (n === 1 ? (W - L - R) / 2 : (i * (W - L - R)) / (n - 1));
  const y = (v) => T + ((hi - v) * (H - T - B)) / (hi - lo);
  const id = `spc-${title.replace(/\W/g, '')}-${Math.random().toString(36).slice(2, 8)}`;
  const out = points.filter((p, i) => flagged(p, i));
  const last = bands[bands.length - 1];
  const desc = `${n} points from sample ${points[0].index} to ${points[n - 1].index}. `
    + (last ? `Centre line ${fmt(last.center)}, upper limit ${fmt(last.ucl)}, lower limit ${fmt(last.lcl)}. ` : 'No control limits frozen yet. ')
    + (out.length ? `Signals at samples ${out.map((p) => p.index).join(', ')}.` : 'No signals.');
  const svg = s('svg', { class: 'chart spc-chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-labelledby': `${id}-t ${id}-d` },
    s('title', { id: `${id}-t` }, `${title} chart`), s('desc', { id: `${id}-d` }, desc));
  for (const v of [lo + pad, (lo + hi) / 2, hi - pad]) {
    svg.append(s('text', { x: L - 6, y: y(v) + 4, 'text-anchor': 'end' }, fmt(v)));
  }
  // Limits as steps: a p or u chart's band changes with each sample's size.
  const step = (key) => points.map((p, i) => { const b = band(p); return b ? `${x(i)},${y(b[key])}` : null; }).filter(Boolean).join(' ');
  if (bands.length) {
    svg.append(s('polyline', { class: 'spc-limit', points: step('ucl') }), s('polyline', { class: 'spc-limit', points: step('lcl') }),
      s('polyline', { class: 'spc-cl', points: step('center') }));
    svg.append(s('text', { x: W - R, y: y(last.ucl) - 4, 'text-anchor': 'end' }, 'UCL'), s('text', { x: W - R, y: y(last.lcl) + 14, 'text-anchor': 'end' }, 'LCL'));
  }
  svg.append(s('polyline', { class: 'spc-line', points: points.map((p, i) => (value(p) == null ? null : `${x(i)},${y(value(p))}`)).filter(Boolean).join(' ') }));
  points.forEach((p, i) => {
    const v = value(p);
    if (v == null) return;
    const bad = flagged(p, i);
    const label = `sample ${p.index}: ${fmt(v)}${bad ? ', signal' : ''}`;
    svg.append(bad
      ? s('rect', { class: 'spc-out', x: x(i) - 5, y: y(v) - 5, width: 10, height: 10, transform: `rotate(45 ${x(i)} ${y(v)})` }, s('title', {}, label))
      : s('circle', { class: 'spc-pt', cx: x(i), cy: y(v), r: 3 }, s('title', {}, label)));
  });
  svg.append(s('line', { class: 'axis', x1: L, x2: W - R, y1: H - B, y2: H - B }),
    s('text', { x: L, y: H - 8 }, `#${points[0].index}`), s('text', { x: W - R, y: H - 8, 'text-anchor': 'end' }, `#${points[n - 1].index}`));
  return h('figure', { class: 'spc-figure' }, svg);
}

function render(chart) {
  const c = chart.characteristic;
  const [primary, spread] = CHART[c.chart] || [c.chart];
  const byVersion = new Map(chart.limit_versions.map((l) => [l.version, l]));
  const signalled = (part) => new Set(chart.signals.filter((g) => g.part === part).map((g) => g.index));
  const outP = signalled('primary'), outS = signalled('spread');
  const l = c.limits, cap = c.capability;
  const facts = h('dl', { class: 'spc-facts' },
    h('dt', {}, 'Chart'), h('dd', {}, `${primary}${spread ? `–${spread}` : ''}, n = ${c.subgroup_size}`),
    h('dt', {}, 'Samples'), h('dd', {}, String(c.samples)),
    h('dt', {}, 'Limits'), h('dd', {}, l ? `version ${l.version} (${l.basis}${l.baseline_from ? ` ${l.baseline_from}–${l.baseline_to}` : ''}): CL ${fmt(l.primary.center)}, UCL ${fmt(l.primary.ucl)}, LCL ${fmt(l.primary.lcl)}` : 'not frozen yet'),
    h('dt', {}, 'Spec'), h('dd', {}, `LSL ${fmt(c.lsl)} · target ${fmt(c.target)} · USL ${fmt(c.usl)}`),
    h('dt', {}, 'Capability'), h('dd', {}, cap ? `Cp ${fmt(cap.cp, 2)} · Cpk ${fmt(cap.cpk, 2)} (σ̂ ${fmt(cap.sigma, 4)})` : '—'),
    h('dt', {}, 'Rules'), h('dd', {}, c.rules.join(', ')));
  // Points recorded before any limits (the phase I baseline) are drawn against the limits in
  // force (p and u: at the nominal size), so the baseline can be read against its own limits.
  const bandOf = (p) => p.band || (l && p.limits_version == null ? l.primary : null);
  const spreadBand = (p) => {
    const v = p.limits_version == null ? l : byVersion.get(p.limits_version);
    return v && v.spread ? v.spread : null;
  };
  const charts = [drawChart(primary, chart.points, (p) => p.value, bandOf, (p) => outP.has(p.index))];
  if (spread) charts.push(drawChart(spread, chart.points, (p) => p.spread, spreadBand, (p) => outS.has(p.index)));
  const rows = chart.signals.slice().reverse().map((g) => h('tr', {},
    h('td', { class: 'n' }, String(g.index)), h('td', {}, g.description), h('td', {}, g.part === 'spread' ? spread : primary),
    h('td', { class: 'n' }, fmt(g.value)), h('td', { class: 'n' }, fmt(g.z, 2)), h('td', {}, new Date(g.at).toLocaleString())));
  const table = rows.length
    ? h('table', {}, h('caption', { class: 'sr-only' }, 'Signals, newest first'),
      h('thead', {}, h('tr', {}, ...['Sample', 'Rule', 'Chart', 'Value', 'z', 'When'].map((t) => h('th', { scope: 'col' }, t)))), h('tbody', {}, ...rows))
    : h('p', { class: 'muted' }, 'No signals.');
  $('spc-chart').replaceChildren(h('h2', {}, c.name, ' ', h('span', { class: 'muted' }, c.characteristic_id)), facts, ...charts);
  $('spc-signals').replaceChildren(table);
}

let timer = 0;
async function load() {
  clearTimeout(timer);
  if ($('view-spc').hidden || !sessionStorage.getItem(TOKEN_KEY)) return;
  const select = $('spc-characteristic');
  try {
    const list = (await api('/api/v1/spc/characteristics')) || [];
    const chosen = select.value;
    select.replaceChildren(...list.map((c) => h('option', { value: c.characteristic_id },
      `${c.name} (${c.characteristic_id})${c.signals ? ` · ${c.signals} signals` : ''}`)));
    if (!list.length) {
      $('spc-chart').replaceChildren(h('p', { class: 'muted' }, 'No characteristics defined (POST /api/v1/spc/characteristics).'));
      $('spc-signals').replaceChildren();
    } else {
      if (list.some((c) => c.characteristic_id === chosen)) select.value = chosen;
      render(await api(`/api/v1/spc/characteristics/${encodeURIComponent(select.value)}?last=100`));
    }
    $('spc-status').textContent = '';
  } catch (e) {
    $('spc-status').textContent = `Could not load: ${e.message}`;
  }
  timer = setTimeout(load, RELOAD_MS);
}

if ($('view-spc')) {
  // app.js shows the section (navigation, sign-in): load whenever it becomes visible.
  new MutationObserver(() => { if (!$('view-spc').hidden) load(); })
    .observe($('view-spc'), { attributes: true, attributeFilter: ['hidden'] });
  $('spc-characteristic').addEventListener('change', load);
  load();
}
