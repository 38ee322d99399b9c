// TF.js's own weight loader in Node, timed inside the process:
//   node load_weights.js SPEC_JSON
// SPEC: {base_url, warmup, repeats, names (optional), checks {name: sha256}, n_tensors,
// nbytes}. `warmup` untimed runs come first (the first run is the memory measurement).
// Each run: fetch + JSON.parse model.json, then tf.io.loadWeights(manifest, prefix,
// names); tensors are disposed after it. Node start and require() are not timed.
// Peak extra memory: as in memory.py, reset the kernel's peak RSS mark by writing 5 to
// /proc/self/clear_refs, then VmHWM after the load minus VmRSS before it.
// Prints "RESULT {json}" as its last line.
'use strict';
const fs = require('fs');
const crypto = require('crypto');
const { performance } = require('perf_hooks');

function status() {
  const out = {};
  for (const line of fs.readFileSync('/proc/self/status', 'utf8').split('\n')) {
    const m = /^(VmRSS|VmHWM):\s+(\d+) kB/.exec(line);
    if (m) out[m[1]] = Number(m[2]) * 1024;
  }
  return out;
}

function resetPeak() {
  try {
    fs.writeFileSync('/proc/self/clear_refs', '5');
    return 'VmHWM';
  } catch (e) {
    return 'unavailable';
  }
}

async function main() {
  const spec = JSON.parse(process.argv[2]);
  let tf;
  try {
    // silence the "looks like you are running TensorFlow.js in Node.js" banner
    const warn = console.warn;
    console.warn = () => {};
    tf = require('@tensorflow/tfjs');
    console.warn = warn;
    await tf.setBackend('cpu');
    await tf.ready();
  } catch (e) {
    return { unavailable: true, error: `${e.name}: ${e.message}` };
  }
  const warmup = spec.warmup || 0;
  const times = [];
  const warmupTimes = [];
  const peaks = [];
  const baselines = [];
  let method = 'VmHWM';
  let verifyError = null;
  for (let i = 0; i < warmup + spec.repeats; i++) {
    if (global.gc) global.gc();
    method = resetPeak();
    const before = status().VmRSS;
    const t0 = performance.now();
    const res = await fetch(`${spec.base_url}/model.json`);
    if (!res.ok) throw new Error(`model.json: HTTP ${res.status}`);
    const modelJson = JSON.parse(await res.text());
    const map = await tf.io.loadWeights(modelJson.weightsManifest, `${spec.base_url}/`, spec.names || undefined);
    const t1 = performance.now();
    const peak = status().VmHWM;
    (i < warmup ? warmupTimes : times).push((t1 - t0) / 1000);
    peaks.push(method === 'VmHWM' ? Math.max(0, peak - before) : null);
    baselines.push(before);
    if (i === 0) verifyError = verify(map, spec);
    tf.dispose(Object.values(map));
  }
  return {
    runs: warmup + spec.repeats, warmup_times: warmupTimes, times, peak_extra: peaks, rss_baseline: baselines, memory_method: method,
    verified: verifyError === null, verify_error: verifyError,
  };
}

function verify(map, spec) {
  const names = Object.keys(map);
  const want = spec.names ? spec.names.length : spec.n_tensors;
  if (!spec.names && names.length !== want) return `got ${names.length} tensors, model has ${want}`;
  let total = 0;
  for (const n of names) total += map[n].size * 4;
  if (!spec.names && total !== spec.nbytes) return `got ${total} bytes of tensors, model has ${spec.nbytes}`;
  const checks = spec.names ? spec.names : Object.keys(spec.checks);
  for (const name of checks) {
    if (!(name in map)) return `missing tensor ${name}`;
    const data = map[name].dataSync();
    const digest = crypto.createHash('sha256')
      .update(Buffer.from(data.buffer, data.byteOffset, data.byteLength)).digest('hex');
    if (digest !== spec.checks[name]) return `tensor ${name}: wrong bytes`;
  }
  return null;
}

main().then(
  (out) => { console.log('RESULT ' + JSON.stringify(out)); process.exit(0); },
  (e) => { console.log('RESULT ' + JSON.stringify({ error: `${e.name}: ${e.message}` })); process.exit(0); },
);
