'use strict';
// node tests/js/server/browser_run.js CONFIG_JSON
//
// Runs tests/js/server/page.js's scenario in headless Chromium (playwright-core)
// and prints one JSON line: {result, downloads: [paths], log, refused}.
// CONFIG_JSON (inline or a file): {chromium, page, server, guarded, token,
// downloadDir}. Only 127.0.0.1 is reachable: the host resolver maps every
// other name to nothing, and any other request is aborted and reported.

const fs = require('fs');
const path = require('path');
const {chromium} = require('playwright-core');
const {ARGS, confine} = require('../browser/loopback.js');

async function main() {
  const arg = process.argv[2];
  if (!arg) throw new Error('usage: browser_run.js CONFIG_JSON');
  const config = JSON.parse(arg.trim().startsWith('{') ? arg : fs.readFileSync(arg, 'utf8'));
  const browser = await chromium.launch({executablePath: config.chromium, args: ARGS});
  const log = [];
  const refused = [];
  const saving = [];
  try {
    const context = await browser.newContext({acceptDownloads: true});
    await confine(context, refused);
    const page = await context.newPage();
    page.on('console', (m) => log.push(`console.${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => log.push(`pageerror: ${e.message}`));
    page.on('download', (download) => {
      const target = path.join(config.downloadDir, download.suggestedFilename());
      saving.push(download.saveAs(target).then(() => target));
    });
    await page.goto(config.page, {waitUntil: 'load'});
    const result = await page.evaluate(
      (cfg) => window.tfjsfsServerScenario(cfg),
      {server: config.server, guarded: config.guarded, token: config.token});
    // downloads:// triggers two anchor clicks; wait for both files
    const deadline = Date.now() + 30000;
    while (saving.length < 2 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const downloads = await Promise.all(saving);
    process.stdout.write(JSON.stringify({result, downloads, log, refused}) + '\n');
  } finally {
    await browser.close();
  }
}

main().catch((err) => {
  process.stderr.write(`${err && err.stack ? err.stack : err}\n`);
  process.exitCode = 1;
});
