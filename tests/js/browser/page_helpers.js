'use strict';
// Helpers for the Chromium bridge tests, loaded by the test page after
// tf.min.js and tests/js/tfjs_models.js (window.tfjsfsModels). They use the
// real TF.js: save, load, predict, list; tensors travel to Python as
// {name, shape, dtype, data_b64} (raw little-endian bytes, as in tests/js).
(function () {
  const tf = window.tf;

  function toBase64(bytes) {
    const parts = [];
    for (let i = 0; i < bytes.length; i += 0x8000) {
      parts.push(String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000)));
    }
    return btoa(parts.join(''));
  }

  function fromBase64(text) {
    const binary = atob(text);
    const out = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
    return out.buffer;
  }

  function entry(tensor, name) {
    const values = tensor.dataSync();
    const bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
    const out = {shape: tensor.shape, dtype: tensor.dtype, data_b64: toBase64(bytes)};
    if (name !== undefined) out.name = name;
    return out;
  }

  function entryTensor(e) {
    const arrays = {float32: Float32Array, int32: Int32Array, bool: Uint8Array};
    const dtype = e.dtype || 'float32';
    return tf.tensor(new arrays[dtype](fromBase64(e.data_b64)), e.shape, dtype);
  }

  function weightEntries(model) {
    const tensors = model.getWeights();
    return model.weights.map((w, i) => entry(tensors[i], w.originalName));
  }

  async function init() {
    await tf.setBackend('cpu');
    await tf.ready();
  }

  function describe(model, input) {
    return {weights: weightEntries(model), input: entry(input),
      prediction: entry(model.predict(input))};
  }

  window.tfjsfsTest = {
    init,
    /** Builds harness model `name`, saves it to `url` with TF.js. */
    async save(name, url) {
      await init();
      const {model, input} = window.tfjsfsModels.buildModel(name);
      const result = await model.save(url);
      return {info: result.modelArtifactsInfo, ...describe(model, input)};
    },
    /** TF.js's own artifacts of harness model `name` (weightData as base64). */
    async artifacts(name) {
      await init();
      const {model, input} = window.tfjsfsModels.buildModel(name);
      let captured = null;
      await model.save(tf.io.withSaveHandler(async (a) => {
        captured = a;
        return {modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON(a)};
      }));
      const data = new Uint8Array(tf.io.CompositeArrayBuffer.join(captured.weightData));
      return {modelTopology: captured.modelTopology, weightSpecs: captured.weightSpecs,
        format: captured.format, generatedBy: captured.generatedBy,
        convertedBy: captured.convertedBy, weightData_b64: toBase64(data), input: entry(input)};
    },
    /** tf.loadLayersModel(url), then its weights and prediction for `input`. */
    async load(url, input) {
      await init();
      const model = await tf.loadLayersModel(url);
      return describe(model, entryTensor(input));
    },
    /** The same from artifacts handed over directly (tf.io.fromMemory). */
    async loadFromMemory(artifacts, input) {
      await init();
      const model = await tf.loadLayersModel(tf.io.fromMemory({
        modelTopology: artifacts.modelTopology, weightSpecs: artifacts.weightSpecs,
        weightData: fromBase64(artifacts.weightData_b64)}));
      return describe(model, entryTensor(input));
    },
    async listModels() {
      return tf.io.listModels();
    },
    /** Raw view of one IndexedDB model: which stores hold it, and its byte count. */
    rawIndexedDB(path) {
      return new Promise((resolve, reject) => {
        const open = indexedDB.open('tensorflowjs');
        open.onupgradeneeded = () => {
          // The database did not exist: nothing is stored.
          open.transaction.abort();
        };
        open.onerror = () => resolve({exists: false, model: false, info: false});
        open.onsuccess = () => {
          const db = open.result;
          const names = Array.from(db.objectStoreNames);
          if (!names.includes('models_store') || !names.includes('model_info_store')) {
            db.close();
            resolve({exists: true, stores: names, model: false, info: false});
            return;
          }
          const tx = db.transaction(['models_store', 'model_info_store'], 'readonly');
          const model = tx.objectStore('models_store').get(path);
          const info = tx.objectStore('model_info_store').get(path);
          tx.oncomplete = () => {
            db.close();
            const m = model.result;
            resolve({exists: true, model: m !== undefined, info: info.result !== undefined,
              weightBytes: m ? m.modelArtifacts.weightData.byteLength : null,
              infoBytes: info.result ? info.result.modelArtifactsInfo.weightDataBytes : null});
          };
          tx.onerror = () => reject(tx.error);
        };
      });
    },
    localStorageKeys(prefix) {
      return Object.keys(localStorage).filter((k) => k.startsWith(prefix)).sort();
    },
  };
})();
