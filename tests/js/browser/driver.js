'use strict';
// A small JSON-lines remote control for headless Chromium (playwright-core),
// used by tests/test_bridge_chromium.py.
//
//   node tests/js/browser/driver.js <chromium executable>
//
// Each stdin line is a command {id, op, ...}; each reply is one stdout line
// {id, ok: true, result} or {id, ok: false, error}. Commands:
//   newContext {context, storageState?}        a fresh browser context
//   closeContext {context}
//   newPage {context, page, url}               open url, wait for 'load'
//   closePage {page, runBeforeUnload?}
//   eval {page, fn, arg}                       await (fn)(arg) in the page
//   start {page, fn, arg, job}                 start (fn)(arg), do not wait
//   wait {job}                                 await a started job
//   waitFor {page, fn, arg, ms}                poll until (fn)(arg) is truthy
//   screenshot {page, path}                    full-page PNG
//   storageState {context, indexedDB}          context.storageState()
//   log {}                                     console lines, page errors and
//                                              refused (non-loopback) requests
//   quit {}
// Only 127.0.0.1 is reachable: every other request is aborted and recorded.

const readline = require('readline');
const {chromium} = require('playwright-core');
const {ARGS, confine} = require('./loopback.js');

const state = {browser: null, contexts: {}, pages: {}, jobs: {}, log: [], refused: []};

function call(fn, arg) {
  return `(${fn})(${JSON.stringify(arg === undefined ? null : arg)})`;
}

async function newContext(cmd) {
  const options = {viewport: {width: 1280, height: 720}};
  if (cmd.storageState) options.storageState = cmd.storageState;
  const context = await state.browser.newContext(options);
  await confine(context, state.refused);
  state.contexts[cmd.context] = context;
  return true;
}

async function newPage(cmd) {
  const context = state.contexts[cmd.context || 'main'];
  if (!context) throw new Error(`no context ${cmd.context}`);
  const page = await context.newPage();
  page.on('console', (m) => state.log.push(`[${cmd.page}] console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => state.log.push(`[${cmd.page}] pageerror: ${e.message}`));
  page.on('dialog', (d) => d.dismiss().catch(() => {}));
  state.pages[cmd.page] = page;
  if (cmd.url) await page.goto(cmd.url, {waitUntil: 'load'});
  return page.url();
}

function page(cmd) {
  const p = state.pages[cmd.page];
  if (!p) throw new Error(`no page ${cmd.page}`);
  return p;
}

const OPS = {
  newContext,
  async closeContext(cmd) {
    await state.contexts[cmd.context].close();
    delete state.contexts[cmd.context];
    return true;
  },
  newPage,
  async closePage(cmd) {
    await page(cmd).close({runBeforeUnload: Boolean(cmd.runBeforeUnload)});
    delete state.pages[cmd.page];
    return true;
  },
  eval(cmd) {
    return page(cmd).evaluate(call(cmd.fn, cmd.arg));
  },
  start(cmd) {
    const promise = page(cmd).evaluate(call(cmd.fn, cmd.arg));
    state.jobs[cmd.job] = promise.then((value) => ({ok: true, value}),
      (err) => ({ok: false, error: String(err && err.message || err)}));
    return true;
  },
  async wait(cmd) {
    const outcome = await state.jobs[cmd.job];
    delete state.jobs[cmd.job];
    return outcome;
  },
  async waitFor(cmd) {
    // polled from here, not with waitForFunction: that one evals the predicate
    // inside the page, which the pages' Content-Security-Policy forbids
    const expression = call(cmd.fn, cmd.arg);
    const deadline = Date.now() + (cmd.ms || 30000);
    while (!(await page(cmd).evaluate(expression))) {
      if (Date.now() > deadline) throw new Error(`waitFor: timed out on ${cmd.fn}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return true;
  },
  async screenshot(cmd) {
    await page(cmd).screenshot({path: cmd.path, fullPage: true});
    return cmd.path;
  },
  storageState(cmd) {
    return state.contexts[cmd.context || 'main'].storageState({indexedDB: Boolean(cmd.indexedDB)});
  },
  log() {
    return {log: state.log.slice(), refused: state.refused.slice()};
  },
  async quit() {
    if (state.browser) await state.browser.close();
    state.browser = null;
    return true;
  },
};

async function main() {
  const executablePath = process.argv[2] || '/usr/bin/chromium';
  state.browser = await chromium.launch({executablePath, args: ARGS, headless: true});
  process.stdout.write(JSON.stringify({id: 0, ok: true, result: state.browser.version()}) + '\n');
  const lines = readline.createInterface({input: process.stdin});
  for await (const line of lines) {
    if (!line.trim()) continue;
    const cmd = JSON.parse(line);
    let reply;
    try {
      if (!(cmd.op in OPS)) throw new Error(`unknown op ${cmd.op}`);
      reply = {id: cmd.id, ok: true, result: await OPS[cmd.op](cmd)};
    } catch (err) {
      reply = {id: cmd.id, ok: false, error: String(err && err.stack || err)};
    }
    process.stdout.write(JSON.stringify(reply === undefined ? null : reply) + '\n');
    if (cmd.op === 'quit') break;
  }
  if (state.browser) await state.browser.close();
  process.exit(0);
}

main().catch((err) => {
  process.stderr.write(String(err && err.stack || err) + '\n');
  process.exit(1);
});
