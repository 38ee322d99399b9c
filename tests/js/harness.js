'use strict';
// Shared helpers for the TF.js interop scripts in this folder.
//
// Conventions used by every script:
//   - the CPU backend is selected before anything else (deterministic values);
//   - the result is printed as ONE line of JSON, the last line on stdout
//     (TF.js may print banners or warnings before it);
//   - errors go to stderr with their stack and the exit code is 1;
//   - tensor values travel as {shape, dtype, data_b64}, where data_b64 is the
//     base64 of the raw little-endian bytes in the TF.js weight encoding
//     (string tensors: uint32 LE byte length + UTF-8 bytes per element).

const fs = require('fs');
const os = require('os');
const tf = require('@tensorflow/tfjs');

if (os.endianness() !== 'LE') {
  throw new Error('The interop harness assumes a little-endian machine.');
}

// Bytes per element of every fixed-width dtype TF.js can put in a manifest.
const DTYPE_SIZE = {float32: 4, int32: 4, bool: 1, complex64: 8};

/** Selects the CPU backend; call (and await) before creating tensors. */
async function init() {
  await tf.setBackend('cpu');
  await tf.ready();
}

/** Raw little-endian bytes of a tensor, as TF.js writes them to a shard. */
function tensorBytes(tensor) {
  const values = tensor.dataSync();
  if (tensor.dtype === 'string') {
    const parts = [];
    for (const value of values) {
      const bytes = Buffer.from(value);
      const length = Buffer.alloc(4);
      length.writeUInt32LE(bytes.length, 0);
      parts.push(length, bytes);
    }
    return Buffer.concat(parts);
  }
  return Buffer.from(values.buffer, values.byteOffset, values.byteLength);
}

/** {shape, dtype, data_b64} of a tensor (plus `name` when given). */
function tensorEntry(tensor, name) {
  const entry = name === undefined ? {} : {name};
  entry.shape = tensor.shape;
  entry.dtype = tensor.dtype;
  entry.data_b64 = tensorBytes(tensor).toString('base64');
  return entry;
}

/** Inverse of tensorEntry for fixed-width dtypes (inputs are never strings). */
function entryTensor(entry) {
  const dtype = entry.dtype || 'float32';
  const raw = Buffer.from(entry.data_b64, 'base64');
  const copy = raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.length);
  const arrays = {float32: Float32Array, int32: Int32Array, bool: Uint8Array};
  if (!(dtype in arrays)) {
    throw new Error(`Unsupported input dtype ${dtype}`);
  }
  return tf.tensor(new arrays[dtype](copy), entry.shape, dtype);
}

/** Parses a JSON argument: inline JSON (starting with "{") or a file path. */
function readJsonArg(arg) {
  const text = arg.trimStart().startsWith('{') ? arg : fs.readFileSync(arg, 'utf8');
  return JSON.parse(text);
}

/** Prints the result as the last stdout line. */
function emit(result) {
  process.stdout.write(JSON.stringify(result) + '\n');
}

/** Runs an async main, reporting failures on stderr with exit code 1. */
function run(main) {
  main().catch((err) => {
    process.stderr.write(`${err && err.stack ? err.stack : err}\n`);
    process.exitCode = 1;
  });
}

/**
 * Checks that model.getWeights() lines up with the weightSpecs TF.js wrote
 * (same order, names, shapes, dtypes and bytes) and returns the weight
 * entries named as in the manifest. Throws on any disagreement.
 */
function checkedWeightEntries(model, artifacts) {
  const specs = artifacts.weightSpecs;
  const data = Buffer.from(tf.io.CompositeArrayBuffer.join(artifacts.weightData));
  const tensors = model.getWeights();
  const variables = model.weights;
  if (specs.length !== tensors.length) {
    throw new Error(`${specs.length} weightSpecs but ${tensors.length} weights`);
  }
  let offset = 0;
  const entries = specs.map((spec, i) => {
    const tensor = tensors[i];
    const where = `weight ${i} (${spec.name})`;
    if (variables[i].originalName !== spec.name) {
      throw new Error(`${where}: variable is named ${variables[i].originalName}`);
    }
    if (JSON.stringify(spec.shape) !== JSON.stringify(tensor.shape)) {
      throw new Error(`${where}: spec shape ${spec.shape} vs ${tensor.shape}`);
    }
    if (spec.dtype !== tensor.dtype || spec.quantization) {
      throw new Error(`${where}: spec dtype ${spec.dtype} vs ${tensor.dtype}`);
    }
    const bytes = tensorBytes(tensor);
    const size = tensor.size * DTYPE_SIZE[spec.dtype];
    if (!bytes.equals(data.subarray(offset, offset + size))) {
      throw new Error(`${where}: bytes differ from weightData at ${offset}`);
    }
    offset += size;
    return tensorEntry(tensor, spec.name);
  });
  if (offset !== data.length) {
    throw new Error(`weightData has ${data.length} bytes, specs cover ${offset}`);
  }
  return entries;
}

/** Saves `model` through tf.io.withSaveHandler and returns the artifacts. */
async function captureArtifacts(model) {
  let captured = null;
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      captured = artifacts;
      return {modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON(artifacts)};
    }),
  );
  return captured;
}

/**
 * The expected.json dump: weights named as in the manifest, the fixed
 * input, the prediction for it, and TF.js's ModelArtifactsInfo byte counts.
 */
async function expectedDump(name, model, input) {
  const artifacts = await captureArtifacts(model);
  const info = tf.io.getModelArtifactsInfoForJSON(artifacts);
  const prediction = tf.tidy(() => model.predict(input));
  const dump = {
    model: name,
    weights: checkedWeightEntries(model, artifacts),
    input: tensorEntry(input),
    prediction: tensorEntry(prediction),
    model_artifacts_info: {
      modelTopologyType: info.modelTopologyType,
      modelTopologyBytes: info.modelTopologyBytes,
      weightSpecsBytes: info.weightSpecsBytes,
      weightDataBytes: info.weightDataBytes,
    },
  };
  prediction.dispose();
  return {artifacts, dump};
}

module.exports = {
  tf,
  DTYPE_SIZE,
  init,
  tensorBytes,
  tensorEntry,
  entryTensor,
  readJsonArg,
  emit,
  run,
  checkedWeightEntries,
  captureArtifacts,
  expectedDump,
};
