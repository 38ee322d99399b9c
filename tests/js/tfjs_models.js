'use strict';
// A fixed set of small, deterministic TF.js layers models with a fixed
// input each. Every initialiser is seeded and every layer is named, so the
// weight names, bytes and predictions are the same on every run.
//
//   node tests/js/tfjs_models.js   -> prints {models: [{name, weights}]}
//
// Models:
//   mlp    dense -> dense (both with bias)
//   cnn    conv2d -> batchNormalization -> flatten -> dense
//   rnn    embedding -> lstm -> dense
//   mixed  dense -> a custom layer holding an int32 and a bool weight.
//          No built-in TF.js layer has non-float32 weights; a custom layer
//          can (LayerVariable accepts any dtype), and TF.js saves and loads
//          those through the normal manifest path.

const {tf, init, emit, run} = require('./harness');

const L = tf.layers;
const I = tf.initializers;
const glorot = (seed) => I.glorotUniform({seed});
const normal = (seed) => I.randomNormal({mean: 0, stddev: 0.5, seed});
const uniform = (minval, maxval, seed) => I.randomUniform({minval, maxval, seed});

/** Adds a per-feature int32 offset and zeroes the features a bool mask drops. */
class MaskedOffset extends L.Layer {
  static className = 'TfjsfsMaskedOffset';

  build(inputShape) {
    const units = inputShape[inputShape.length - 1];
    this.offset = this.addWeight('offset', [units], 'int32', uniform(-5, 5, 41),
      undefined, false);
    this.keep = this.addWeight('keep', [units], 'bool', I.ones(), undefined, false);
    this.built = true;
  }

  call(inputs) {
    return tf.tidy(() => {
      const x = Array.isArray(inputs) ? inputs[0] : inputs;
      const shifted = x.add(this.offset.read().toFloat());
      return shifted.mul(this.keep.read().toFloat());
    });
  }
}
tf.serialization.registerClass(MaskedOffset);

/** Deterministic float values in [-2, 2] for an input of `shape`. */
function fixedValues(shape) {
  const size = shape.reduce((a, b) => a * b, 1);
  return Array.from({length: size}, (_, i) => Math.round(200 * Math.sin(0.7 * i + 0.3)) / 100);
}

const BUILDERS = {
  mlp() {
    const model = tf.sequential({name: 'mlp', layers: [
      L.dense({name: 'mlp_hidden', inputShape: [4], units: 8, activation: 'relu',
        kernelInitializer: glorot(1), biasInitializer: normal(2)}),
      L.dense({name: 'mlp_out', units: 3, kernelInitializer: glorot(3),
        biasInitializer: normal(4)}),
    ]});
    return {model, input: tf.tensor(fixedValues([2, 4]), [2, 4])};
  },

  cnn() {
    const model = tf.sequential({name: 'cnn', layers: [
      L.conv2d({name: 'cnn_conv', inputShape: [5, 5, 2], filters: 3, kernelSize: 3,
        activation: 'relu', kernelInitializer: glorot(11), biasInitializer: normal(12)}),
      L.batchNormalization({name: 'cnn_bn', gammaInitializer: uniform(0.5, 1.5, 13),
        betaInitializer: normal(14), movingMeanInitializer: normal(15),
        movingVarianceInitializer: uniform(0.5, 2, 16)}),
      L.flatten({name: 'cnn_flat'}),
      L.dense({name: 'cnn_out', units: 2, kernelInitializer: glorot(17),
        biasInitializer: normal(18)}),
    ]});
    return {model, input: tf.tensor(fixedValues([2, 5, 5, 2]), [2, 5, 5, 2])};
  },

  rnn() {
    const model = tf.sequential({name: 'rnn', layers: [
      L.embedding({name: 'rnn_embed', inputShape: [6], inputDim: 10, outputDim: 4,
        embeddingsInitializer: uniform(-1, 1, 21)}),
      L.lstm({name: 'rnn_lstm', units: 5, kernelInitializer: glorot(22),
        recurrentInitializer: I.orthogonal({seed: 23}), biasInitializer: normal(24)}),
      L.dense({name: 'rnn_out', units: 2, kernelInitializer: glorot(25),
        biasInitializer: normal(26)}),
    ]});
    const ids = Array.from({length: 12}, (_, i) => (7 * i + 3) % 10);
    return {model, input: tf.tensor(ids, [2, 6])};
  },

  mixed() {
    const model = tf.sequential({name: 'mixed', layers: [
      L.dense({name: 'mixed_dense', inputShape: [3], units: 4,
        kernelInitializer: glorot(31), biasInitializer: normal(32)}),
      new MaskedOffset({name: 'mixed_offset'}),
    ]});
    const keep = model.getLayer('mixed_offset');
    keep.setWeights([keep.getWeights()[0], tf.tensor([false, true, false, false], [4], 'bool')]);
    return {model, input: tf.tensor(fixedValues([2, 3]), [2, 3])};
  },
};

const MODEL_NAMES = Object.keys(BUILDERS);

/**
 * Moves every weight away from its seeded initial value. The topology keeps
 * the seeds, so a model rebuilt from model.json alone has the initial values:
 * a loader that silently skipped the weights would then be caught.
 */
function shiftWeights(model) {
  const shift = (w) => (w.dtype === 'float32' ? w.mul(1.25).add(0.0625)
    : w.dtype === 'int32' ? w.add(tf.scalar(2, 'int32')) : w.logicalNot());
  model.setWeights(tf.tidy(() => model.getWeights().map(shift)));
}

/** Builds model `name`; returns {model, input}. Call init() first. */
function buildModel(name) {
  if (!(name in BUILDERS)) {
    throw new Error(`Unknown model '${name}'; known: ${MODEL_NAMES.join(', ')}`);
  }
  const built = BUILDERS[name]();
  shiftWeights(built.model);
  return built;
}

module.exports = {MODEL_NAMES, buildModel, MaskedOffset};

if (require.main === module) {
  run(async () => {
    await init();
    const models = MODEL_NAMES.map((name) => {
      const {model} = buildModel(name);
      const weights = model.weights.map((w) => ({name: w.originalName, shape: w.shape,
        dtype: w.dtype}));
      return {name, weights};
    });
    emit({models});
  });
}
