'use strict';
// node tests/js/tfjs_save.js MODEL LAYOUT OUTDIR [NAME]
//
// Saves model MODEL (see tfjs_models.js) through tf.io.withSaveHandler and
// writes the files the way a TF.js save handler lays them out:
//   node       OUTDIR/model.json + OUTDIR/weights.bin, paths ["weights.bin"],
//              model.json keys in the order tfjs-node's file:// handler uses
//   downloads  OUTDIR/NAME.json + OUTDIR/NAME.weights.bin (NAME = "model"),
//              paths ["./NAME.weights.bin"], keys in the order of the
//              browser downloads:// (and http) handler
// and OUTDIR/expected.json: the weights (manifest names), the fixed input,
// the prediction and TF.js's ModelArtifactsInfo byte counts.
// Prints {model_json, weights_bin, expected} (absolute paths).

const fs = require('fs');
const path = require('path');
const {tf, init, emit, run, expectedDump} = require('./harness');
const {buildModel} = require('./tfjs_models');

/** model.json object as tfjs-node's NodeFileSystem.save builds it. */
function nodeModelJSON(a, weightsManifest) {
  const json = {
    modelTopology: a.modelTopology,
    weightsManifest,
    format: a.format,
    generatedBy: a.generatedBy,
    convertedBy: a.convertedBy,
  };
  for (const key of ['trainingConfig', 'signature', 'userDefinedMetadata']) {
    if (a[key] != null) json[key] = a[key];
  }
  return json;
}

/** model.json object as tfjs-core's getModelJSONForModelArtifacts builds it. */
function browserModelJSON(a, weightsManifest) {
  const json = {
    modelTopology: a.modelTopology,
    format: a.format,
    generatedBy: a.generatedBy,
    convertedBy: a.convertedBy,
    weightsManifest,
  };
  const optional = ['signature', 'userDefinedMetadata', 'modelInitializer',
    'initializerSignature', 'trainingConfig'];
  for (const key of optional) {
    if (a[key] != null) json[key] = a[key];
  }
  return json;
}

const LAYOUTS = {
  node: () => ({json: 'model.json', bin: 'weights.bin', manifestPath: 'weights.bin',
    build: nodeModelJSON}),
  downloads: (name) => ({json: `${name}.json`, bin: `${name}.weights.bin`,
    manifestPath: `./${name}.weights.bin`, build: browserModelJSON}),
};

run(async () => {
  const [modelName, layout, outDir, name = 'model'] = process.argv.slice(2);
  if (!modelName || !outDir || !(layout in LAYOUTS)) {
    throw new Error('usage: tfjs_save.js MODEL node|downloads OUTDIR [NAME]');
  }
  await init();
  const {model, input} = buildModel(modelName);
  const {artifacts, dump} = await expectedDump(modelName, model, input);
  const files = LAYOUTS[layout](name);
  const manifest = [{paths: [files.manifestPath], weights: artifacts.weightSpecs}];
  const weights = Buffer.from(tf.io.CompositeArrayBuffer.join(artifacts.weightData));

  fs.mkdirSync(outDir, {recursive: true});
  const out = {
    model_json: path.resolve(outDir, files.json),
    weights_bin: path.resolve(outDir, files.bin),
    expected: path.resolve(outDir, 'expected.json'),
  };
  fs.writeFileSync(out.model_json, JSON.stringify(files.build(artifacts, manifest)), 'utf8');
  fs.writeFileSync(out.weights_bin, weights);
  fs.writeFileSync(out.expected, JSON.stringify({layout, ...dump}));
  emit(out);
});
