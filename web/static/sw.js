// @ts-check
// The service worker: it makes the page installable and lets it open when
// the network is away. It handles the page's own static files only (the
// page, its modules and message catalogs, stylesheet, manifest and icons), network first, so a new
// deploy is picked up on the next load; the cache is only a fallback. The
// WebSocket (/ws, which never reaches a service worker anyway), health,
// metrics and any API path always go to the network untouched.

/**
 * The parts of the service worker scope this file uses (the page's type
 * check knows the DOM, not the worker globals).
 * @typedef {{ request: Request, respondWith(r: Promise<Response>): void }} FetchEvent
 * @typedef {{ waitUntil(p: Promise<unknown>): void }} ExtendableEvent
 * @typedef {{
 *   addEventListener(type: 'install' | 'activate', f: (e: ExtendableEvent) => void): void,
 *   addEventListener(type: 'fetch', f: (e: FetchEvent) => void): void,
 *   skipWaiting(): Promise<void>,
 *   clients: { claim(): Promise<void> },
 *   registration: { scope: string },
 * }} WorkerScope
 */

const sw = /** @type {WorkerScope} */ (/** @type {unknown} */ (self));

/** One cache; older ones (other names) are deleted when this worker takes over. */
const cacheName = 'strangers-static-1';

/** The static files, as paths under the worker's scope ('' is the page). */
const staticFile = /^(?:|index\.html|[a-z0-9-]+\.(?:js|css|webmanifest)|locales\/[A-Za-z-]+\.js|icons\/[a-z0-9-]+\.(?:svg|png))$/;

sw.addEventListener('install', (e) => {
  e.waitUntil(sw.skipWaiting());
});

sw.addEventListener('activate', (e) => {
  e.waitUntil(
    (async () => {
      for (const name of await caches.keys()) if (name !== cacheName) await caches.delete(name);
      await sw.clients.claim();
    })(),
  );
});

sw.addEventListener('fetch', (e) => {
  const req = e.request;
  if (req.method !== 'GET' || !req.url.startsWith(sw.registration.scope)) return;
  const path = new URL(req.url).pathname.slice(new URL(sw.registration.scope).pathname.length);
  if (path === 'sw.js' || !staticFile.test(path)) return;
  e.respondWith(networkFirst(req));
});

/**
 * The network's answer (kept for later), or the kept one when the network
 * fails.
 * @param {Request} req
 * @returns {Promise<Response>}
 */
async function networkFirst(req) {
  const cache = await caches.open(cacheName);
  try {
    const resp = await fetch(req);
    if (resp.ok && resp.type === 'basic') await cache.put(req, resp.clone());
    return resp;
  } catch (err) {
    const kept = await cache.match(req, { ignoreSearch: true });
    if (kept) return kept;
    throw err;
  }
}
