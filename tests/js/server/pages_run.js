'use strict';
// node tests/js/server/pages_run.js CONFIG_JSON
//
// Opens the tfjsfs server's own pages in headless Chromium (playwright-core),
// takes a full-page screenshot of each, reads what they show from the DOM,
// sorts and filters, and uploads a model through the index page's form.
// CONFIG_JSON: {chromium, index, models: [{key, url}], shots, upload: {name,
// json, weights: [paths], token}, filter, standalone: [{key, path}]}. Prints one JSON line:
// {index, models: {key: ...}, upload, log, refused, requests}.

const fs = require('fs');
const path = require('path');
const {chromium} = require('playwright-core');
const {ARGS, confine} = require('../browser/loopback.js');

function readPage() {
  const text = (sel) => {
    const el = document.querySelector(sel);
    return el ? el.textContent : null;
  };
  const rows = (sel) => Array.from(document.querySelectorAll(`${sel} tbody tr`))
    .map((tr) => Array.from(tr.cells).map((td) => td.textContent));
  const facts = {};
  for (const tr of document.querySelectorAll('#facts tr')) {
    facts[tr.cells[0].textContent] = tr.cells[1].textContent;
  }
  const bars = Array.from(document.querySelectorAll('#layer-bytes rect.bar')).map((r) => ({
    layer: r.dataset.layer, bytes: Number(r.dataset.bytes),
    width: r.getBoundingClientRect().width,
  }));
  const hist = document.getElementById('histogram');
  const bins = Array.from(document.querySelectorAll('#histogram rect.bin'))
    .map((r) => Number(r.dataset.count));
  return {
    title: document.title,
    loader: text('#loader'),
    facts,
    inputs: rows('#inputs'),
    outputs: rows('#outputs'),
    signature: text('#signature'),
    groups: rows('#groups'),
    weights: rows('#weights'),
    bars,
    histogram: hist ? {
      state: hist.dataset.state, weight: hist.dataset.weight, bins,
      count: Number(hist.dataset.count), min: Number(hist.dataset.min),
      max: Number(hist.dataset.max), mean: Number(hist.dataset.mean),
    } : null,
    models: rows('#models'),
    visible: Array.from(document.querySelectorAll('#models tbody tr'))
      .filter((tr) => !tr.hidden).map((tr) => tr.dataset.name),
    count: text('#count'),
    total: text('#total'),
    totalBytes: document.getElementById('total') ?
      Number(document.getElementById('total').dataset.bytes) : null,
  };
}

async function sortBy(page, table, header) {
  await page.click(`${table} thead th:nth-child(${header})`);
  return page.evaluate((sel) => Array.from(document.querySelectorAll(`${sel} tbody tr`))
    .map((tr) => tr.cells[0].textContent), table);
}

async function main() {
  const config = JSON.parse(process.argv[2]);
  const browser = await chromium.launch({executablePath: config.chromium, args: ARGS});
  const log = [];
  const refused = [];
  const requests = [];
  const out = {models: {}};
  try {
    const context = await browser.newContext({viewport: {width: 1200, height: 900}});
    await confine(context, refused);
    const page = await context.newPage();
    page.on('console', (m) => log.push(`console.${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => log.push(`pageerror: ${e.message}`));
    page.on('request', (r) => requests.push(r.url()));
    page.on('requestfailed', (r) => log.push(`requestfailed: ${r.url()}`));

    for (const {key, url} of config.models) {
      await page.goto(url, {waitUntil: 'load'});
      await page.waitForSelector('#histogram[data-state=done], #histogram[data-state=error]',
        {timeout: 30000});
      await page.screenshot({path: path.join(config.shots, `model-${key}.png`), fullPage: true});
      const shown = await page.evaluate(readPage);
      shown.sortedByBytes = await sortBy(page, '#weights', 7);
      shown.sortedByBytesDesc = await sortBy(page, '#weights', 7);
      // choose another tensor: the histogram follows
      const options = await page.$$eval('#hist-weight option', (os) => os.map((o) => o.value));
      await page.selectOption('#hist-weight', options[options.length - 1]);
      await page.waitForFunction((n) => {
        const h = document.getElementById('histogram');
        return h.dataset.state === 'done' && h.dataset.weight !== n;
      }, shown.histogram.weight, {timeout: 30000});
      shown.second = (await page.evaluate(readPage)).histogram;
      out.models[key] = shown;
    }

    // tfjsfs info --html files: self-contained, so shown from their text alone
    // (in a fresh about:blank page: not under the server's Content-Security-Policy)
    out.standalone = {};
    for (const {key, path: file} of config.standalone || []) {
      const alone = await context.newPage();
      alone.on('console', (m) => log.push(`console.${m.type()}: ${m.text()}`));
      alone.on('pageerror', (e) => log.push(`pageerror: ${e.message}`));
      alone.on('request', (r) => requests.push(r.url()));
      await alone.setContent(fs.readFileSync(file, 'utf8'), {waitUntil: 'load'});
      await alone.waitForSelector('#histogram[data-state=done], #histogram[data-state=error]',
        {timeout: 30000});
      await alone.screenshot({path: path.join(config.shots, `info-html-${key}.png`), fullPage: true});
      out.standalone[key] = await alone.evaluate(readPage);
      await alone.close();
    }

    await page.goto(config.index, {waitUntil: 'load'});
    await page.screenshot({path: path.join(config.shots, 'index.png'), fullPage: true});
    const index = await page.evaluate(readPage);
    index.sortedBySize = await sortBy(page, '#models', 4);
    index.sortedBySizeDesc = await sortBy(page, '#models', 4);
    await page.fill('#filter', config.filter);
    index.filtered = await page.evaluate(readPage);
    await page.fill('#filter', '');
    out.index = index;

    const up = config.upload;
    await page.fill('#upload-name', up.name);
    await page.setInputFiles('#upload-json', up.json);
    await page.setInputFiles('#upload-weights', up.weights);
    if (up.token) await page.fill('#upload-token', up.token);
    await page.click('#upload button[type=submit]');
    await page.waitForSelector('#upload-status[data-state=done], #upload-status[data-state=error]',
      {timeout: 60000});
    out.upload = await page.$eval('#upload-status', (el) => ({
      state: el.dataset.state, text: el.textContent,
    }));
    await page.screenshot({path: path.join(config.shots, 'index-uploaded.png'), fullPage: true});
    process.stdout.write(JSON.stringify({...out, log, refused, requests}) + '\n');
  } finally {
    await browser.close();
  }
}

main().catch((err) => {
  process.stderr.write(`${err && err.stack ? err.stack : err}\n`);
  process.exitCode = 1;
});
