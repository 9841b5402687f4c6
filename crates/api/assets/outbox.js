// The floor app's outbox: every write is a command stored in IndexedDB before it is
// sent, with a client-made Idempotency-Key and the floor time it happened at. A command
// leaves the outbox only when the server has answered it: accepted (removed) or refused
// (kept, marked refused with the server's reason, until the person dismisses it).
// Network failures and 5xx leave it pending, to be sent again when the connection returns.
// The server makes a resend harmless (Idempotency-Key) and merges by floor time (the
// machine events carry their `timestamp`), so the order in which commands arrive does
// not change the KPIs of their window.
//
// The pure part (`replayOrder`, `outcome`) is separate from the I/O (`Outbox`).

const DB = 'shopfloor-floor';
const STORE = 'commands';

/** The order in which pending commands are sent: by floor time, then by creation. */
export function replayOrder(commands) {
  return commands
    .filter((c) => c.state === 'pending')
    .slice()
    .sort((a, b) => (a.floor_at < b.floor_at ? -1 : a.floor_at > b.floor_at ? 1 : a.seq - b.seq));
}

/**
 * What an answer means for a command: 'done' (2xx); 'retry' (no answer (0), 5xx, 408,
 * 429, or 401, which a new sign-in cures); else 'refused' (a 4xx about the command
 * itself, 403 included: the role may not do it).
 */
export function outcome(status) {
  if (status >= 200 && status < 300) return 'done';
  if (status === 0 || status === 408 || status === 429 || status >= 500) return 'retry';
  if (status === 401) return 'retry';
  return 'refused';
}

/** A new command record (not yet stored). */
export function command({ label, method, path, body, floorAt }) {
  return {
    key: crypto.randomUUID(),
    seq: Date.now() * 1000 + Math.floor(Math.random() * 1000),
    label,
    method,
    path,
    body: body ?? {},
    floor_at: (floorAt ?? new Date()).toISOString(),
    created_at: new Date().toISOString(),
    state: 'pending',
    reason: null,
  };
}

function request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

export class Outbox {
  constructor(db) {
    this.db = db;
  }

  static async open() {
    const open = indexedDB.open(DB, 1);
    open.onupgradeneeded = () => {
      open.result.createObjectStore(STORE, { keyPath: 'key' });
    };
    return new Outbox(await request(open));
  }

  store(mode) {
    return this.db.transaction(STORE, mode).objectStore(STORE);
  }

  async put(cmd) {
    await request(this.store('readwrite').put(cmd));
  }

  async remove(key) {
    await request(this.store('readwrite').delete(key));
  }

  async all() {
    const rows = await request(this.store('readonly').getAll());
    return rows.sort((a, b) => a.seq - b.seq);
  }
}
