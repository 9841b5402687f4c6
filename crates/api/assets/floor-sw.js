// The floor app's service worker: keeps the app shell (the page at /floor and the assets
// it names) so that the app opens without a network. Served from /assets/ with
// `Service-Worker-Allowed: /floor` and registered with scope /floor.
//
// - install: fetch /floor, cache it and every /assets/ URL it names;
// - the shell (navigations to /floor, /assets/*): network first, so a new binary is seen at
//   once; without a network, the cached copy (assets matched without their ?v= hash when
//   a module imports them by bare name);
// - /api/*: never touched (the app keeps its own last answers and its outbox).

const CACHE = 'shopfloor-floor-shell-v3';

async function cacheShell() {
  const cache = await caches.open(CACHE);
  const page = await fetch('/floor', { cache: 'no-store' });
  if (!page.ok) throw new Error(`/floor: ${page.status}`);
  const html = await page.clone().text();
  await cache.put('/floor', page);
  const assets = [...new Set([...html.matchAll(/\/assets\/[^"'\s>]+/g)].map((m) => m[0]))];
  await cache.addAll([...assets, '/assets/outbox.js', '/assets/settings.js', '/assets/quality.js', '/assets/floor-sw.js']);
}

self.addEventListener('install', (event) => {
  event.waitUntil(cacheShell().then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    for (const key of await caches.keys()) if (key !== CACHE) await caches.delete(key);
    await self.clients.claim();
  })());
});

async function shell(request) {
  const cache = await caches.open(CACHE);
  const url = new URL(request.url);
  const key = request.mode === 'navigate' ? '/floor' : request;
  try {
    const fresh = await fetch(request);
    if (fresh.ok) await cache.put(key, fresh.clone());
    return fresh;
  } catch (e) {
    const kept = (await cache.match(key)) || (await cache.match(url.pathname, { ignoreSearch: true }));
    if (!kept) throw e;
    // Says where the answer came from (the browser test checks it).
    const headers = new Headers(kept.headers);
    headers.set('X-Served-From', 'service-worker-cache');
    return new Response(kept.body, { status: kept.status, statusText: kept.statusText, headers });
  }
}

self.addEventListener('fetch', (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== 'GET' || url.origin !== self.location.origin) return;
  const isShell = (event.request.mode === 'navigate' && url.pathname.startsWith('/floor'))
    || url.pathname.startsWith('/assets/');
  if (isShell) event.respondWith(shell(event.request));
});
