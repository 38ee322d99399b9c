'use strict';
// node tests/js/tfjs_load.js SOURCE [INPUT_JSON]
//
// Loads a layers model with tf.loadLayersModel from SOURCE and prints
// {weights: [{name, shape, dtype, data_b64}], prediction: {...}}.
//   SOURCE      http://127.0.0.1:PORT/.../model.json (TF.js's own http
//               handler), or a local path to a model JSON file of any name
//               (a small fs IOHandler: shards are read relative to the JSON
//               file, all groups, in manifest order)
//   INPUT_JSON  inline JSON or a JSON file: {shape, dtype?, data_b64}, or an
//               expected.json written by tfjs_save.js (its `input` is used).
//               Without it no prediction is made.
// Weight names are the variables' original names, which TF.js matched
// against the manifest names while loading.

const fs = require('fs');
const path = require('path');
const {tf, init, emit, run, tensorEntry, entryTensor, readJsonArg} = require('./harness');
require('./tfjs_models'); // registers the custom layer class of the "mixed" model

/** IOHandler reading a model JSON file and its shards with Node's fs. */
function fileHandler(jsonPath) {
  return {
    async load() {
      const modelJSON = JSON.parse(fs.readFileSync(jsonPath, 'utf8'));
      const dir = path.dirname(jsonPath);
      return tf.io.getModelArtifactsForJSON(modelJSON, async (manifest) => {
        const specs = manifest.flatMap((group) => group.weights);
        const shards = manifest.flatMap((group) => group.paths).map((p) => {
          const bytes = fs.readFileSync(path.join(dir, p));
          return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length);
        });
        return [specs, shards];
      });
    },
  };
}

run(async () => {
  const [source, inputArg] = process.argv.slice(2);
  if (!source) throw new Error('usage: tfjs_load.js SOURCE [INPUT_JSON]');
  await init();
  const handler = /^https?:\/\//.test(source) ? source
    : fileHandler(source.replace(/^file:\/\//, ''));
  const model = await tf.loadLayersModel(handler);
  const result = {
    weights: model.weights.map((w) => tensorEntry(w.read(), w.originalName)),
  };
  if (inputArg) {
    const spec = readJsonArg(inputArg);
    const input = entryTensor(spec.input || spec);
    result.prediction = tensorEntry(tf.tidy(() => model.predict(input)));
  }
  emit(result);
});
