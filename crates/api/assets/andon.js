// The andon banner: open and acknowledged alerts across the top of the page, with an
// acknowledge button (operator, supervisor, admin; others get a 403 and the button says so).
// An ES module on its own, mounted into <div id="andon">, so the dashboard's app.js and the
// floor app know nothing of it; each page's stylesheet styles its `andon-*` classes (the
// pages' CSP forbids inline style attributes). It signs in and out with the page: it follows
// the bearer token in sessionStorage ('shopfloor.token').
//
// Live (ADR 0048): it reads /api/v1/live?topics=alert,alerts with fetch() (EventSource cannot
// send the bearer header) and applies each `alert:{alert_id}` update at once (the update
// carries the alert as GET /api/v1/alerts lists it): a raise shows, an acknowledgement
// updates, a resolution removes. It reads the whole list when the feed (re)connects
// (`ready`), on `resync` and `alerts:reload`, every 60 s as a safety net, and every 5 s while
// the feed is not open (offline, or a process without the live hub answers 503).
//
// An alert only moves forward (open → acknowledged → resolved; escalations only grow), so
// the banner keeps the furthest state it has seen of each: an older answer arriving late
// never undoes a newer one. Resolved alerts are remembered for a while for that reason.

const TOKEN_KEY = 'shopfloor.token';
const SAFETY_MS = 60e3;
const FALLBACK_MS = 5e3;
const SILENCE_MS = 45e3; // the server sends a keep-alive every 15 s
const TOKEN_CHECK_MS = 500;
const FORGET_MS = 10 * 60e3;
const TICK_MS = 30e3;
const RANK = { open: 0, acknowledged: 1, resolved: 2 };

const root = document.getElementById('andon');

const andon = {
  token: null,
  /** alert_id → { alert, seq, at, via } (resolved ones kept FORGET_MS, then forgotten). */
  alerts: new Map(),
  /** Counts the changes applied (a list read knows what came in while it was away). */
  seq: 0,
  /** alert_id → its row element (rows are kept, so a focused button keeps its focus). */
  rows: new Map(),
  live: null,
  retry: 0,
  timers: { retry: 0, watchdog: 0, safety: 0 },
};

// ---- the API -----------------------------------------------------------------------------

async function call(method, path) {
  const token = andon.token;
  if (!token) return null;
  const res = await fetch(path, {
    method,
    headers: { Authorization: `Bearer ${token}`, Accept: 'application/json', 'Content-Type': 'application/json' },
    body: method === 'POST' ? '{}' : undefined,
    cache: 'no-store',
  });
  if (!res.ok) {
    const problem = await res.json().catch(() => ({}));
    const error = new Error(problem.detail || `HTTP ${res.status}`);
    error.status = res.status;
    throw error;
  }
  return res.json();
}

// ---- the alerts --------------------------------------------------------------------------

function progress(alert) {
  return [RANK[alert.state] ?? 0, alert.escalations ?? 0];
}

/** Takes in `alert` (whole, or the fields of a step just taken) unless it is older than
 *  what is shown; `via` says where it came from ('live' or 'list'). */
function apply(alert, via) {
  if (!alert || !alert.alert_id) return;
  const kept = andon.alerts.get(alert.alert_id);
  if (kept) {
    const [r0, e0] = progress(kept.alert);
    const [r1, e1] = progress({ ...kept.alert, ...alert });
    if (r1 < r0 || (r1 === r0 && e1 < e0)) return;
    const moved = r1 > r0 || e1 > e0;
    kept.alert = { ...kept.alert, ...alert };
    kept.seq = ++andon.seq;
    if (moved) { kept.at = Date.now(); kept.via = via; heard(kept); }
    return;
  }
  const fresh = { alert, seq: ++andon.seq, at: Date.now(), via };
  andon.alerts.set(alert.alert_id, fresh);
  heard(fresh);
}

/** What the banner heard last, and from where (for people and tests looking at the page). */
function heard(kept) {
  root.dataset.last = `${kept.alert.alert_id} ${kept.alert.state} ${kept.via}`;
}

/** Reads the whole list: what is neither open nor acknowledged any more is resolved,
 *  unless a newer change came in while the list was being read. */
async function reload() {
  const token = andon.token;
  if (!token) return;
  const started = andon.seq;
  try {
    const [open, acked] = await Promise.all([
      call('GET', '/api/v1/alerts?state=open'),
      call('GET', '/api/v1/alerts?state=acknowledged'),
    ]);
    if (token !== andon.token) return; // signed out (or in again) meanwhile
    const listed = new Set();
    for (const alert of [...(open || []), ...(acked || [])]) {
      listed.add(alert.alert_id);
      apply(alert, 'list');
    }
    for (const [id, kept] of andon.alerts) {
      if (!listed.has(id) && kept.alert.state !== 'resolved' && kept.seq <= started) {
        kept.alert = { ...kept.alert, state: 'resolved' };
        kept.at = Date.now();
        kept.via = 'list';
        heard(kept);
      }
    }
    root.dataset.loaded = String(Number(root.dataset.loaded || 0) + 1);
  } catch {
    // Signed out or offline: the page says so; the next read tries again.
  }
  render();
}

// ---- the banner --------------------------------------------------------------------------

function since(iso) {
  const minutes = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 60000));
  return minutes < 60 ? `${minutes} min` : `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

/** What each kind of alert says, given where it is (machine, subject or plant). */
const SAYS = {
  machine_down: (w) => `${w} is down`,
  unclassified_stop: (w) => `${w}: stop without a reason`,
  predictive_alert: (w) => `${w}: predictive maintenance due`,
  inventory_shortage: (w) => `${w}: stock shortage`,
  spc_signal: (w) => `${w}: out of statistical control`,
  maintenance_overdue: (w) => `maintenance ${w} is overdue`,
  below_reorder_point: (w) => `${w} below its reorder point`,
  ingest_silent: (w) => `${w} has gone silent`,
  rejected_messages: () => 'machine messages are being rejected',
  // The subject is "{metric} {scope}", e.g. "oee line:L1".
  kpi_below_target: (w) => {
    const [metric, scope] = String(w).split(' ');
    const name = { oee: 'OEE', availability: 'Availability', performance: 'Performance', quality: 'Quality' }[metric] || metric;
    return `${name} of ${(scope || 'the plant').replace(':', ' ')} below target this shift`;
  },
};

function what(alert) {
  const subject = alert.kind === 'maintenance_overdue' || alert.kind === 'kpi_below_target'
    ? alert.subject : null;
  const where = subject || alert.machine_id || alert.subject || 'plant';
  const say = SAYS[alert.kind];
  return say ? say(where) : `${where}: ${String(alert.kind || 'alert').replace(/_/g, ' ')}`;
}

function ackButton(row, id) {
  const button = document.createElement('button');
  button.type = 'button';
  button.className = 'andon-ack';
  button.textContent = 'Acknowledge';
  button.setAttribute('aria-describedby', `${row.id}-what`);
  button.addEventListener('click', async () => {
    button.disabled = true;
    try {
      const answer = await call('POST', `/api/v1/alerts/${encodeURIComponent(id)}/acknowledge`);
      // The step's answer shows at once; the live feed brings the whole row.
      if (answer && andon.alerts.has(id)) apply({ ...answer, alert_id: id }, 'answer');
      render();
    } catch (e) {
      button.textContent = e.status === 403 ? `Not allowed: ${e.message}` : e.message;
      button.dataset.refused = String(e.status || '');
      button.disabled = e.status === 403;
    }
  });
  return button;
}

let rowCount = 0;

function rowFor(kept) {
  const { alert } = kept;
  let row = andon.rows.get(alert.alert_id);
  if (!row) {
    row = document.createElement('div');
    row.className = 'andon-row';
    row.id = `andon-${++rowCount}`;
    row.dataset.alertId = alert.alert_id;
    // The message is the live region: it changes only when the alert does (a raise is
    // announced, then its acknowledgement), never with the ticking duration beside it.
    const message = document.createElement('p');
    message.className = 'andon-message';
    message.id = `${row.id}-what`;
    message.setAttribute('role', 'alert');
    const duration = document.createElement('span');
    duration.className = 'andon-since';
    row.append(message, duration);
    andon.rows.set(alert.alert_id, row);
  }
  row.dataset.severity = alert.severity || 'critical';
  row.dataset.state = alert.state;
  row.dataset.via = kept.via;
  const acked = alert.state === 'acknowledged' ? ` — acknowledged by ${alert.acknowledged_by}` : '';
  setText(row.querySelector('.andon-message'), `${what(alert)}${acked}`);
  setText(row.querySelector('.andon-since'), `for ${since(alert.since || alert.raised_at)}`);
  const button = row.querySelector('.andon-ack');
  if (alert.state === 'open' && !button) row.append(ackButton(row, alert.alert_id));
  if (alert.state !== 'open' && button) button.remove();
  return row;
}

function render() {
  if (!root) return;
  const now = Date.now();
  for (const [id, kept] of andon.alerts) {
    if (kept.alert.state === 'resolved' && now - kept.at > FORGET_MS) andon.alerts.delete(id);
  }
  const shown = [...andon.alerts.values()]
    .filter((k) => k.alert.state !== 'resolved')
    .sort((a, b) => (RANK[a.alert.state] - RANK[b.alert.state])
      || (Date.parse(b.alert.raised_at) - Date.parse(a.alert.raised_at))
      || a.alert.alert_id.localeCompare(b.alert.alert_id));
  const ids = new Set(shown.map((k) => k.alert.alert_id));
  for (const [id, row] of andon.rows) {
    if (!ids.has(id)) { row.remove(); andon.rows.delete(id); }
  }
  // Only what is out of place moves (moving a node takes its focus away).
  shown.map(rowFor).forEach((row, i) => {
    if (root.children[i] !== row) root.insertBefore(row, root.children[i] || null);
  });
  root.hidden = shown.length === 0;
  root.dataset.count = String(shown.length);
}

// ---- the live feed -----------------------------------------------------------------------

/** Parses Server-Sent Events from text chunks (the subset axum sends; as app.js). */
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

/** The safety read: slow while the feed is open, quicker while it is not. */
function setOpen(open) {
  if (root.dataset.live === (open ? 'open' : 'closed')) return;
  root.dataset.live = open ? 'open' : 'closed';
  clearInterval(andon.timers.safety);
  andon.timers.safety = setInterval(reload, open ? SAFETY_MS : FALLBACK_MS);
}

function onEvent(event, data) {
  if (event === 'ready') {
    andon.retry = 0;
    setOpen(true);
    reload(); // whatever changed while we were not listening
  } else if (event === 'resync') {
    reload();
  } else if (event === 'update') {
    let update;
    try { update = JSON.parse(data); } catch { reload(); return; }
    const topic = String(update.topic || '');
    if (topic === 'alerts:reload') reload();
    else if (topic.startsWith('alert:')) { apply(update.data, 'live'); render(); }
  }
}

function watchdog(controller) {
  clearTimeout(andon.timers.watchdog);
  andon.timers.watchdog = setTimeout(() => controller.abort(), SILENCE_MS);
}

async function connect() {
  const controller = new AbortController();
  andon.live = controller;
  try {
    const res = await fetch('/api/v1/live?topics=alert,alerts', {
      headers: { Authorization: `Bearer ${andon.token}`, Accept: 'text/event-stream' },
      cache: 'no-store',
      signal: controller.signal,
    });
    if (res.status === 401) { // the page signs out; a new token starts the banner again
      if (andon.live === controller) andon.live = null;
      setOpen(false);
      return;
    }
    if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
    const parser = new SseParser(onEvent);
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    watchdog(controller);
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      watchdog(controller);
      parser.push(value);
    }
  } catch { /* dropped, refused or aborted: again below unless stopped */ }
  clearTimeout(andon.timers.watchdog);
  if (andon.live !== controller) return; // stopped or replaced
  setOpen(false);
  const delay = Math.min(30e3, 1e3 * 2 ** andon.retry) * (0.5 + Math.random() / 2);
  andon.retry += 1;
  andon.timers.retry = setTimeout(connect, delay);
}

function stop() {
  clearTimeout(andon.timers.retry);
  clearTimeout(andon.timers.watchdog);
  const controller = andon.live;
  andon.live = null;
  if (controller) controller.abort();
}

/** Starts, stops or restarts with the page's token. */
function followToken() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token === andon.token) return;
  stop();
  andon.token = token;
  andon.alerts.clear();
  render();
  if (!token) {
    clearInterval(andon.timers.safety);
    delete root.dataset.live;
    return;
  }
  andon.retry = 0;
  setOpen(false);
  reload();
  connect();
}

if (root) {
  root.hidden = true;
  followToken();
  setInterval(followToken, TOKEN_CHECK_MS);
  setInterval(render, TICK_MS);
}
