'use strict';
// In-page scenario for tests/test_server_chromium.py, run by browser_run.js.
// window.tfjsfsServerScenario({server, guarded, token}) builds a seeded
// layers model with real TF.js (CPU backend), then:
//   1. model.save(server + '/models/browser/direct') and loads it back with
//      tf.loadLayersModel, predicting on a fixed input;
//   2. saves to localstorage:// and indexeddb:// and tf.io.copyModel's both
//      to the server;
//   3. saves to a token-protected server without a token (must fail) and with
//      one through tf.io.http(url, {requestInit: {headers}}) (CORS preflight);
//   4. saves to downloads:// (the driver captures the two files).
// Tensors travel as {name?, shape, dtype, data_b64} (raw little-endian bytes).
(function () {
  const tf = window.tf;

  function b64(tensor) {
    const values = tensor.dataSync();
    const bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
    let text = '';
    for (let i = 0; i < bytes.length; i += 0x8000) {
      text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    return btoa(text);
  }

  function entry(tensor, name) {
    const out = {shape: tensor.shape, dtype: tensor.dtype, data_b64: b64(tensor)};
    if (name !== undefined) out.name = name;
    return out;
  }

  function weights(model) {
    const tensors = model.getWeights();
    return model.weights.map((w, i) => entry(tensors[i], w.originalName));
  }

  function buildModel() {
    const L = tf.layers;
    const init = (seed) => tf.initializers.glorotUniform({seed});
    const model = tf.sequential({name: 'browser', layers: [
      L.dense({name: 'browser_hidden', inputShape: [4], units: 8, activation: 'relu',
        kernelInitializer: init(1), biasInitializer: tf.initializers.randomNormal({seed: 2})}),
      L.dense({name: 'browser_out', units: 3, kernelInitializer: init(3),
        biasInitializer: tf.initializers.randomNormal({seed: 4})}),
    ]});
    // move every weight off its seeded start, so a load that skipped weights shows
    model.setWeights(tf.tidy(() => model.getWeights().map((w) => w.mul(1.25).add(0.0625))));
    return model;
  }

  async function saved(promise) {
    const result = await promise;
    const response = result.responses && result.responses[0];
    return {
      modelArtifactsInfo: result.modelArtifactsInfo,
      status: response ? response.status : null,
      body: response ? await response.json() : null,
    };
  }

  window.tfjsfsServerScenario = async function ({server, guarded, token}) {
    await tf.setBackend('cpu');
    await tf.ready();
    const model = buildModel();
    const x = tf.tensor([[0.5, -1, 2, 0.25], [-0.75, 1.5, 0, -2]]);
    const out = {backend: tf.getBackend(), version: tf.version.tfjs};
    out.weights = weights(model);
    out.prediction = entry(model.predict(x));

    out.direct = await saved(model.save(server + '/models/browser/direct'));
    const loaded = await tf.loadLayersModel(server + '/models/browser/direct/model.json');
    out.reloaded = {weights: weights(loaded), prediction: entry(loaded.predict(x))};

    await model.save('localstorage://tfjsfs-ls');
    await model.save('indexeddb://tfjsfs-idb');
    out.listed = Object.keys(await tf.io.listModels()).sort();
    out.copyIndexedDB = await tf.io.copyModel(
      'indexeddb://tfjsfs-idb', server + '/models/browser/from-indexeddb');
    out.copyLocalStorage = await tf.io.copyModel(
      'localstorage://tfjsfs-ls', server + '/models/browser/from-localstorage');
    const copied = await tf.loadLayersModel(
      server + '/models/browser/from-indexeddb/model.json');
    out.copiedPrediction = entry(copied.predict(x));

    try {
      await model.save(guarded + '/models/browser/guarded');
      out.withoutToken = 'saved';
    } catch (err) {
      out.withoutToken = String(err.message || err);
    }
    out.withToken = await saved(model.save(tf.io.http(guarded + '/models/browser/guarded', {
      requestInit: {headers: {Authorization: 'Bearer ' + token}},
    })));

    out.downloads = await model.save('downloads://tfjsfs-dl');
    return out;
  };
})();
