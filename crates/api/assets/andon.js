// The andon banner: open alerts across the top of the page, with an acknowledge button for
// the roles allowed (operator, supervisor, admin; others get a 403 and the button says so).
// An ES module on its own, mounted into <div id="andon">, so the dashboard's app.js and the
// floor app know nothing of it. It reads the same bearer token the page signed in with
// (sessionStorage 'shopfloor.token') and polls GET /api/v1/alerts every few seconds.
// Styles are set through the CSSOM (the page's CSP forbids inline style attributes).

const TOKEN_KEY = 'shopfloor.token';
const POLL_MS = 3000;
const COLOURS = { critical: '#b3261e', warning: '#b26a00', info: '#1f5fa8' };

const root = document.getElementById('andon');

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

async function call(method, path) {
  const t = token();
  if (!t) return null;
  const res = await fetch(path, {
    method,
    headers: { Authorization: `Bearer ${t}`, Accept: 'application/json', 'Content-Type': 'application/json' },
    body: method === 'POST' ? '{}' : undefined,
    cache: 'no-store',
  });
  if (!res.ok) {
    const problem = await res.json().catch(() => ({}));
    throw new Error(problem.detail || `HTTP ${res.status}`);
  }
  return res.json();
}

function style(el, css) {
  Object.assign(el.style, css);
  return el;
}

function since(iso) {
  const minutes = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 60000));
  return minutes < 60 ? `${minutes} min` : `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

function row(alert) {
  const line = style(document.createElement('div'), {
    display: 'flex', alignItems: 'center', gap: '1rem', padding: '0.5rem 1rem',
    background: COLOURS[alert.severity] || COLOURS.critical, color: '#fff', fontWeight: '600',
  });
  line.setAttribute('role', 'alert');
  line.dataset.alertId = alert.alert_id;
  const text = document.createElement('span');
  const what = alert.kind.replace(/_/g, ' ');
  const where = alert.machine_id || alert.subject || 'plant';
  text.textContent = `${where}: ${what} for ${since(alert.since)}` +
    (alert.state === 'acknowledged' ? ` — acknowledged by ${alert.acknowledged_by}` : '');
  style(text, { flex: '1' });
  line.append(text);
  if (alert.state === 'open') {
    const button = document.createElement('button');
    button.type = 'button';
    button.textContent = 'Acknowledge';
    button.addEventListener('click', async () => {
      button.disabled = true;
      try {
        await call('POST', `/api/v1/alerts/${encodeURIComponent(alert.alert_id)}/acknowledge`);
        refresh();
      } catch (e) {
        button.textContent = e.message;
      }
    });
    line.append(button);
  }
  return line;
}

async function refresh() {
  if (!root) return;
  try {
    const [open, acked] = await Promise.all([
      call('GET', '/api/v1/alerts?state=open'),
      call('GET', '/api/v1/alerts?state=acknowledged'),
    ]);
    const alerts = [...(open || []), ...(acked || [])];
    root.replaceChildren(...alerts.map(row));
    root.hidden = alerts.length === 0;
  } catch {
    // Signed out or offline: the page says so; the banner waits for the next poll.
  }
}

if (root) {
  refresh();
  setInterval(refresh, POLL_MS);
}
