'use strict';
// node tests/js/tfjs_load_weights.js MODEL_JSON_URL [--loader=http|weights] [--time]
//
// Loads only the weights of a bundle over HTTP with TF.js's own loaders and
// prints {weights: [{name, shape, dtype, data_b64}]} in manifest order.
//   --loader=http     (default) tf.io.http(URL).load(), the loader behind
//                     loadLayersModel/loadGraphModel: all shards fetched at
//                     once, query string carried onto shard URLs; then
//                     tf.io.decodeWeights. Handles every dtype, quantization.
//   --loader=weights  the legacy tf.io.loadWeights(manifest, prefix) after
//                     fetching model.json (no string weights).
//   --time            print only {elapsed_ms, bytes, shard_bytes, weights}:
//                     the wall time from the model.json request to the
//                     decoded tensors, the decoded tensor bytes, the shard
//                     bytes fetched (http loader only, else null) and the
//                     weight count.

const {tf, init, emit, run, tensorBytes, tensorEntry} = require('./harness');

async function viaHttp(url) {
  const artifacts = await tf.io.http(url).load();
  const tensors = tf.io.decodeWeights(artifacts.weightData, artifacts.weightSpecs);
  const named = artifacts.weightSpecs.map((spec) => [spec.name, tensors[spec.name]]);
  return {named, shardBytes: new tf.io.CompositeArrayBuffer(artifacts.weightData).byteLength};
}

async function viaLoadWeights(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`GET ${url} failed with status ${response.status}`);
  const manifest = (await response.json()).weightsManifest;
  const prefix = url.substring(0, url.lastIndexOf('/'));
  const tensors = await tf.io.loadWeights(manifest, prefix);
  const specs = manifest.flatMap((group) => group.weights);
  return {named: specs.map((s) => [s.name, tensors[s.name]]), shardBytes: null};
}

run(async () => {
  const args = process.argv.slice(2);
  const url = args.find((a) => !a.startsWith('--'));
  const loader = (args.find((a) => a.startsWith('--loader=')) || '--loader=http').slice(9);
  const loaders = {http: viaHttp, weights: viaLoadWeights};
  if (!url || !(loader in loaders)) {
    throw new Error('usage: tfjs_load_weights.js URL [--loader=http|weights] [--time]');
  }
  await init();
  const start = performance.now();
  const {named, shardBytes} = await loaders[loader](url);
  await Promise.all(named.map(([, t]) => t.data()));
  const elapsed = performance.now() - start;
  if (args.includes('--time')) {
    const bytes = named.reduce((sum, [, t]) => sum + tensorBytes(t).length, 0);
    emit({elapsed_ms: elapsed, bytes, shard_bytes: shardBytes, weights: named.length});
  } else {
    emit({weights: named.map(([name, t]) => tensorEntry(t, name))});
  }
});
