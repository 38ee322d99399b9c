'use strict';
// Headless Chromium confined to 127.0.0.1: launch arguments and a request
// guard, shared by driver.js and ../server/browser_run.js. The host resolver
// maps every other name to nothing; confine() aborts, and records, any
// request that would still leave loopback.

const ARGS = [
  '--no-sandbox', '--headless', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run',
  '--disable-dev-shm-usage', '--disable-quic',
  '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
];

function loopback(url) {
  try {
    const u = new URL(url);
    return ['data:', 'blob:', 'about:'].includes(u.protocol) || u.hostname === '127.0.0.1';
  } catch (_) {
    return false;
  }
}

// Abort every request of a playwright BrowserContext that leaves 127.0.0.1,
// pushing its URL onto `refused`.
async function confine(context, refused) {
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (loopback(url)) return route.continue();
    refused.push(url);
    return route.abort('blockedbyclient');
  });
}

module.exports = {ARGS, confine, loopback};
