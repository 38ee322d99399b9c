'use strict';
// node tests/js/server/redirect_run.js CONFIG_JSON
//
// Headless Chromium (playwright-core) opens CONFIG.page (a page of another
// origin with TF.js), runs tf.loadLayersModel(CONFIG.model) and prints one
// JSON line: {weights: [{name, shape, data}], requests: [{url, status,
// location}], log, refused}. Only 127.0.0.1 is reachable.

const {chromium} = require('playwright-core');
const {ARGS, confine} = require('../browser/loopback.js');

async function main() {
  const config = JSON.parse(process.argv[2]);
  const browser = await chromium.launch({executablePath: config.chromium, args: ARGS});
  const log = [];
  const refused = [];
  const requests = [];
  try {
    const context = await browser.newContext();
    await confine(context, refused);
    const page = await context.newPage();
    page.on('console', (m) => log.push(`console.${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => log.push(`pageerror: ${e.message}`));
    page.on('response', (r) => requests.push(
        {url: r.url(), status: r.status(), location: r.headers()['location'] || null}));
    await page.goto(config.page, {waitUntil: 'load'});
    const weights = await page.evaluate(async (url) => {
      const model = await tf.loadLayersModel(url);
      return model.getWeights().map(
          (w) => ({name: w.name, shape: w.shape, data: Array.from(w.dataSync())}));
    }, config.model);
    process.stdout.write(JSON.stringify({weights, requests, log, refused}) + '\n');
  } finally {
    await browser.close();
  }
}

main().catch((err) => {
  process.stderr.write(`${err && err.stack ? err.stack : err}\n`);
  process.exitCode = 1;
});
