/*
 * tfjsfs browser storage bridge.
 *
 * Moves TensorFlow.js models between this browser's storage and a tfjsfs
 * server's store. It reads and writes TF.js's own layouts directly, so TF.js
 * itself is not needed on the page:
 *
 *   localstorage://<path>  five items under "tensorflowjs_models/<path>/":
 *                          info, model_topology, weight_specs, weight_data
 *                          (base64) and model_metadata
 *   indexeddb://<path>     database "tensorflowjs" version 1, object stores
 *                          "models_store" {modelPath, modelArtifacts,
 *                          modelArtifactsInfo} and "model_info_store"
 *                          {modelPath, modelArtifactsInfo}
 *
 * Guarantees:
 *   - a pull into localStorage writes all five items or none: on any failure
 *     (e.g. the quota) the new items are removed and old ones restored;
 *   - a pull into IndexedDB writes both records in ONE transaction, so a pull
 *     interrupted at any point (page closed, quota, error) leaves no half model;
 *   - nothing is written before the whole model has been downloaded.
 *
 * Page-script API (for automation):  window.tfjsfsBridge
 *   listBrowserModels()                -> {url: ModelArtifactsInfo}
 *   listStoreModels()                  -> [{name, modelArtifactsInfo, ...}]
 *   push(browserUrl, name?, {overwrite, onProgress})
 *   pull(name, browserUrl, {overwrite, onProgress, onQueued})
 *                                      onQueued(transaction): IndexedDB only;
 *                                      called once both records are queued,
 *                                      before the commit (requests added to
 *                                      the transaction commit or fail with it)
 *   readBrowserModel(url)              -> TF.js ModelArtifacts
 *   writeBrowserModel(url, artifacts, {overwrite})
 *   removeBrowserModel(url)
 *   configure({api, headers, token})   API base URL (default: next to this
 *                                      script), extra request headers, and a
 *                                      bearer token for servers that need one
 *   mount(element)                     render the bridge UI into element
 * onProgress receives {phase, loaded, total, fraction}.
 * The script works from any origin the server allows (CORS): include it with
 * <script src="http://server/bridge/bridge.js"></script>.
 */
(function () {
  'use strict';

  const LS_PREFIX = 'tensorflowjs_models';
  const LS_SUFFIXES = ['info', 'model_topology', 'weight_specs', 'weight_data', 'model_metadata'];
  const DB_NAME = 'tensorflowjs';
  const DB_VERSION = 1;
  const MODEL_STORE = 'models_store';
  const INFO_STORE = 'model_info_store';
  const LS_SCHEME = 'localstorage://';
  const IDB_SCHEME = 'indexeddb://';
  const OPTIONAL_FIELDS = ['signature', 'userDefinedMetadata', 'modelInitializer',
    'initializerSignature', 'trainingConfig'];

  const currentScript = document.currentScript;
  const config = {
    api: currentScript && currentScript.src ? new URL('api/', currentScript.src).href
      : new URL('api/', window.location.href).href,
    headers: {},
  };

  /** An error with a machine-readable kind ('quota', 'exists', 'not-found', ...). */
  class BridgeError extends Error {
    constructor(message, kind, cause) {
      super(message);
      this.name = 'BridgeError';
      this.kind = kind || 'error';
      if (cause) this.cause = cause;
    }
  }

  // ------------------------------------------------------------- helpers

  function parseUrl(url) {
    if (typeof url !== 'string') throw new BridgeError(`Not a model URL: ${url}`, 'bad-url');
    for (const [scheme, medium] of [[LS_SCHEME, 'localstorage'], [IDB_SCHEME, 'indexeddb']]) {
      if (url.startsWith(scheme)) {
        const path = url.slice(scheme.length);
        if (!path) throw new BridgeError(`Model URL '${url}' has an empty path`, 'bad-url');
        return {medium, path};
      }
    }
    throw new BridgeError(`Unsupported model URL '${url}': use localstorage://<path> or ` +
      'indexeddb://<path>', 'bad-url');
  }

  function utf8Length(text) {
    return new TextEncoder().encode(text).length;
  }

  function byteLength(data) {
    if (data == null) return 0;
    if (Array.isArray(data)) return data.reduce((n, b) => n + b.byteLength, 0);
    return data.byteLength;
  }

  function joinBuffers(data) {
    if (data == null) return new ArrayBuffer(0);
    if (!Array.isArray(data)) return data;
    const out = new Uint8Array(byteLength(data));
    let offset = 0;
    for (const b of data) {
      out.set(new Uint8Array(b), offset);
      offset += b.byteLength;
    }
    return out.buffer;
  }

  /** ModelArtifactsInfo as TF.js computes it (UTF-8 bytes of JSON.stringify). */
  function artifactsInfo(artifacts) {
    return {
      dateSaved: new Date(),
      modelTopologyType: 'JSON',
      modelTopologyBytes: artifacts.modelTopology == null ? 0
        : utf8Length(JSON.stringify(artifacts.modelTopology)),
      weightSpecsBytes: artifacts.weightSpecs == null ? 0
        : utf8Length(JSON.stringify(artifacts.weightSpecs)),
      weightDataBytes: byteLength(artifacts.weightData),
    };
  }

  function toBase64(buffer) {
    const bytes = new Uint8Array(buffer);
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

  function progress(callback, phase, loaded, total) {
    if (!callback) return;
    const fraction = total ? Math.min(1, loaded / total) : (phase === 'done' ? 1 : 0);
    try {
      callback({phase, loaded, total, fraction});
    } catch (err) {
      console.warn('tfjsfs bridge: onProgress failed', err);
    }
  }

  // -------------------------------------------------------- localStorage

  function lsKeys(path) {
    const keys = {};
    for (const s of LS_SUFFIXES) keys[s] = [LS_PREFIX, path, s].join('/');
    return keys;
  }

  function lsList() {
    const out = {};
    const prefix = LS_PREFIX + '/';
    for (let i = 0; i < localStorage.length; i++) {
      const key = localStorage.key(i);
      if (key.startsWith(prefix) && key.endsWith('/info')) {
        const path = key.split('/').slice(1, -1).join('/');
        try {
          out[LS_SCHEME + path] = JSON.parse(localStorage.getItem(key));
        } catch (err) {
          out[LS_SCHEME + path] = {error: `unreadable info: ${err.message}`};
        }
      }
    }
    return out;
  }

  function lsRead(path) {
    const keys = lsKeys(path);
    const item = (key) => {
      const text = localStorage.getItem(key);
      return text == null ? null : JSON.parse(text);
    };
    const info = item(keys.info);
    if (info == null) {
      throw new BridgeError(`In local storage, there is no model with name '${path}'`,
        'not-found');
    }
    const artifacts = {modelTopology: item(keys.model_topology),
      weightSpecs: item(keys.weight_specs)};
    if (artifacts.modelTopology == null) {
      throw new BridgeError(`In local storage, the topology of model '${path}' is missing.`,
        'corrupt');
    }
    if (artifacts.weightSpecs == null) {
      throw new BridgeError(`In local storage, the weight specs of model '${path}' are ` +
        'missing.', 'corrupt');
    }
    const metadata = item(keys.model_metadata) || {};
    artifacts.format = metadata.format;
    artifacts.generatedBy = metadata.generatedBy;
    artifacts.convertedBy = metadata.convertedBy;
    for (const field of OPTIONAL_FIELDS) {
      if (metadata[field] != null) artifacts[field] = metadata[field];
    }
    const data = localStorage.getItem(keys.weight_data);
    if (data == null) {
      throw new BridgeError(`In local storage, the binary weight values of model '${path}' ` +
        'are missing.', 'corrupt');
    }
    artifacts.weightData = fromBase64(data);
    return artifacts;
  }

  function lsWrite(path, artifacts, options) {
    const keys = lsKeys(path);
    const overwrite = options && options.overwrite;
    if (!overwrite && localStorage.getItem(keys.info) != null) {
      throw new BridgeError(`localstorage://${path} already exists; pass overwrite to ` +
        'replace it', 'exists');
    }
    const weightData = joinBuffers(artifacts.weightData);
    const info = artifactsInfo({...artifacts, weightData});
    const metadata = {format: artifacts.format, generatedBy: artifacts.generatedBy,
      convertedBy: artifacts.convertedBy};
    for (const field of OPTIONAL_FIELDS) {
      if (artifacts[field] != null) metadata[field] = artifacts[field];
    }
    // Everything is serialised before the first write: a failure below can only
    // come from the storage itself.
    const values = {
      info: JSON.stringify(info),
      model_topology: JSON.stringify(artifacts.modelTopology),
      weight_specs: JSON.stringify(artifacts.weightSpecs),
      weight_data: toBase64(weightData),
      model_metadata: JSON.stringify(metadata),
    };
    const previous = {};
    for (const s of LS_SUFFIXES) previous[s] = localStorage.getItem(keys[s]);
    try {
      for (const s of LS_SUFFIXES) localStorage.setItem(keys[s], values[s]);
    } catch (err) {
      for (const s of LS_SUFFIXES) localStorage.removeItem(keys[s]);
      for (const s of LS_SUFFIXES) {
        if (previous[s] != null) {
          try {
            localStorage.setItem(keys[s], previous[s]);
          } catch (_) { /* the old model did fit before; nothing more to do */ }
        }
      }
      const chars = Object.values(values).reduce((n, v) => n + v.length, 0);
      const quota = err && (err.name === 'QuotaExceededError' || err.code === 22);
      throw new BridgeError(
        `Failed to save model '${path}' to local storage: ` +
        (quota ? 'the storage quota was exceeded' :
          'size quota being exceeded is a possible cause of this failure') +
        ` (${err && err.name}: ${err && err.message}); the model needs ${chars} characters: ` +
        `modelTopologyBytes=${info.modelTopologyBytes}, ` +
        `weightSpecsBytes=${info.weightSpecsBytes}, ` +
        `weightDataBytes=${info.weightDataBytes} (base64: ${values.weight_data.length}). ` +
        'Nothing was written; try indexeddb:// for large models.',
        quota ? 'quota' : 'storage', err);
    }
    return info;
  }

  function lsRemove(path) {
    const keys = lsKeys(path);
    if (localStorage.getItem(keys.info) == null) {
      throw new BridgeError(`Cannot find model at path '${path}'`, 'not-found');
    }
    const info = JSON.parse(localStorage.getItem(keys.info));
    for (const s of LS_SUFFIXES) localStorage.removeItem(keys[s]);
    return info;
  }

  // ----------------------------------------------------------- IndexedDB

  function idbOpen() {
    return new Promise((resolve, reject) => {
      if (typeof indexedDB === 'undefined') {
        reject(new BridgeError('The current browser does not appear to support IndexedDB.',
          'unsupported'));
        return;
      }
      const request = indexedDB.open(DB_NAME, DB_VERSION);
      request.onupgradeneeded = () => {
        const db = request.result;
        for (const store of [MODEL_STORE, INFO_STORE]) {
          if (!db.objectStoreNames.contains(store)) {
            db.createObjectStore(store, {keyPath: 'modelPath'});
          }
        }
      };
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(new BridgeError(
        `Cannot open IndexedDB database '${DB_NAME}' v${DB_VERSION}: ` +
        `${request.error && request.error.message}`, 'storage', request.error));
    });
  }

  function requestResult(request) {
    return new Promise((resolve, reject) => {
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
  }

  async function withDb(action) {
    const db = await idbOpen();
    try {
      return await action(db);
    } finally {
      db.close();
    }
  }

  function idbList() {
    return withDb(async (db) => {
      const tx = db.transaction(INFO_STORE, 'readonly');
      const records = await requestResult(tx.objectStore(INFO_STORE).getAll());
      const out = {};
      for (const r of records) out[IDB_SCHEME + r.modelPath] = r.modelArtifactsInfo;
      return out;
    });
  }

  function idbRead(path) {
    return withDb(async (db) => {
      const tx = db.transaction(MODEL_STORE, 'readonly');
      const record = await requestResult(tx.objectStore(MODEL_STORE).get(path));
      if (record == null) {
        throw new BridgeError(`Cannot find model with path '${path}' in IndexedDB.`,
          'not-found');
      }
      return record.modelArtifacts;
    });
  }

  /** Both records in one readwrite transaction: all or nothing. */
  function idbWrite(path, artifacts, options) {
    const overwrite = options && options.overwrite;
    const modelArtifacts = {...artifacts, weightData: joinBuffers(artifacts.weightData)};
    const info = artifactsInfo(modelArtifacts);
    return withDb((db) => new Promise((resolve, reject) => {
      let failure = null;
      const tx = db.transaction([MODEL_STORE, INFO_STORE], 'readwrite');
      tx.oncomplete = () => resolve(info);
      tx.onabort = () => {
        const err = failure || tx.error;
        if (err instanceof BridgeError) {
          reject(err);
          return;
        }
        const quota = err && err.name === 'QuotaExceededError';
        reject(new BridgeError(`Failed to save model '${path}' to IndexedDB` +
          (quota ? ': the storage quota was exceeded' : '') +
          ` (${err && err.name}: ${err && err.message}); weightDataBytes=` +
          `${info.weightDataBytes}. Nothing was written.`, quota ? 'quota' : 'storage', err));
      };
      const infoStore = tx.objectStore(INFO_STORE);
      const modelStore = tx.objectStore(MODEL_STORE);
      const put = () => {
        try {
          infoStore.put({modelPath: path, modelArtifactsInfo: info});
          modelStore.put({modelPath: path, modelArtifacts, modelArtifactsInfo: info});
          if (options && options.onQueued) options.onQueued(tx);
        } catch (err) {
          failure = err;
          tx.abort();
        }
      };
      if (overwrite) {
        put();
      } else {
        const check = infoStore.getKey(path);
        check.onsuccess = () => {
          if (check.result !== undefined) {
            failure = new BridgeError(`indexeddb://${path} already exists; pass overwrite ` +
              'to replace it', 'exists');
            tx.abort();
          } else {
            put();
          }
        };
      }
    }));
  }

  function idbRemove(path) {
    return withDb(async (db) => {
      const tx = db.transaction([MODEL_STORE, INFO_STORE], 'readwrite');
      const info = await requestResult(tx.objectStore(INFO_STORE).get(path));
      if (info == null) {
        tx.abort();
        throw new BridgeError(`Cannot find model at path '${path}'`, 'not-found');
      }
      tx.objectStore(INFO_STORE).delete(path);
      tx.objectStore(MODEL_STORE).delete(path);
      await new Promise((resolve, reject) => {
        tx.oncomplete = resolve;
        tx.onabort = () => reject(tx.error);
      });
      return info.modelArtifactsInfo;
    });
  }

  // --------------------------------------------------------------- server

  function apiUrl(...parts) {
    const path = parts.map((p) => p.split('/').map(encodeURIComponent).join('/')).join('/');
    return new URL(path, config.api).href;
  }

  async function replyError(response, what) {
    let message = `${response.status} ${response.statusText}`;
    let kind = 'http';
    try {
      const body = await response.json();
      if (body && body.error) {
        message = body.error;
        kind = body.kind || kind;
      }
    } catch (_) { /* not JSON */ }
    if (response.status === 401) {
      message += ' (enter the server\'s bearer token, or call tfjsfsBridge.configure({token}))';
      kind = 'unauthorized';
    }
    return new BridgeError(`${what} failed: ${message}`, kind);
  }

  async function getJson(url, what) {
    let response;
    try {
      response = await fetch(url, {headers: config.headers});
    } catch (err) {
      throw new BridgeError(`${what} failed: cannot reach the tfjsfs server at ` +
        `${config.api} (${err.message})`, 'network', err);
    }
    if (!response.ok) throw await replyError(response, what);
    return response.json();
  }

  async function storeList() {
    return getJson(apiUrl('models'), 'Listing the store');
  }

  /** Downloads a store model completely (with progress) before anything is written. */
  async function storeFetch(name, onProgress) {
    const meta = await getJson(apiUrl('models', name), `Reading model '${name}'`);
    const url = new URL(meta.weightsUrl, config.api).href;
    let response;
    try {
      response = await fetch(url, {headers: config.headers});
    } catch (err) {
      throw new BridgeError(`Downloading the weights of '${name}' failed: ${err.message}`,
        'network', err);
    }
    if (!response.ok) throw await replyError(response, `Downloading the weights of '${name}'`);
    const total = Number(response.headers.get('Content-Length')) || meta.weightDataBytes || 0;
    const chunks = [];
    let loaded = 0;
    progress(onProgress, 'download', 0, total);
    const reader = response.body.getReader();
    for (;;) {
      const {done, value} = await reader.read();
      if (done) break;
      chunks.push(value);
      loaded += value.byteLength;
      progress(onProgress, 'download', loaded, total);
    }
    const expected = meta.weightDataBytes != null ? meta.weightDataBytes : total;
    if (loaded !== expected) {
      throw new BridgeError(`The weights of '${name}' arrived incomplete: ${loaded} of ` +
        `${expected} bytes. Nothing was written.`, 'incomplete');
    }
    const artifacts = {...meta.modelArtifacts, weightData: joinBuffers(
      chunks.map((c) => c.buffer.slice(c.byteOffset, c.byteOffset + c.byteLength)))};
    return artifacts;
  }

  function storeUpload(name, artifacts, options) {
    const onProgress = options && options.onProgress;
    const weightData = joinBuffers(artifacts.weightData);
    const modelJson = {modelTopology: artifacts.modelTopology, format: artifacts.format,
      generatedBy: artifacts.generatedBy, convertedBy: artifacts.convertedBy,
      weightsManifest: [{paths: ['./model.weights.bin'], weights: artifacts.weightSpecs}]};
    for (const field of OPTIONAL_FIELDS) {
      if (artifacts[field] != null) modelJson[field] = artifacts[field];
    }
    const form = new FormData();
    form.append('model.json', new Blob([JSON.stringify(modelJson)],
      {type: 'application/json'}), 'model.json');
    form.append('model.weights.bin', new Blob([weightData],
      {type: 'application/octet-stream'}), 'model.weights.bin');
    const query = options && options.overwrite ? '?overwrite=1' : '';
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open('POST', apiUrl('models', name) + query);
      for (const [k, v] of Object.entries(config.headers)) xhr.setRequestHeader(k, v);
      xhr.responseType = 'json';
      xhr.upload.onprogress = (e) => progress(onProgress, 'upload', e.loaded,
        e.lengthComputable ? e.total : weightData.byteLength);
      xhr.onload = () => {
        const body = xhr.response || {};
        if (xhr.status >= 200 && xhr.status < 300) {
          resolve(body);
        } else {
          const hint = xhr.status === 401 ? ' (enter the server\'s bearer token, or call ' +
            'tfjsfsBridge.configure({token}))' : '';
          reject(new BridgeError(`Pushing '${name}' to the store failed: ` +
            `${body.error || xhr.status + ' ' + xhr.statusText}${hint}`,
          xhr.status === 401 ? 'unauthorized' : body.kind || 'http'));
        }
      };
      xhr.onerror = () => reject(new BridgeError(`Pushing '${name}' failed: cannot reach ` +
        `the tfjsfs server at ${config.api} (network or CORS error)`, 'network'));
      xhr.onabort = () => reject(new BridgeError(`Pushing '${name}' was aborted`, 'aborted'));
      xhr.send(form);
    });
  }

  // ---------------------------------------------------------- public API

  async function listBrowserModels() {
    const out = lsList();
    try {
      Object.assign(out, await idbList());
    } catch (err) {
      console.warn('tfjsfs bridge: IndexedDB is not readable', err);
    }
    return out;
  }

  async function listStoreModels() {
    return (await storeList()).models;
  }

  async function readBrowserModel(url) {
    const {medium, path} = parseUrl(url);
    return medium === 'localstorage' ? lsRead(path) : idbRead(path);
  }

  async function writeBrowserModel(url, artifacts, options) {
    const {medium, path} = parseUrl(url);
    if (artifacts.modelTopology instanceof ArrayBuffer || artifacts.modelTopology == null) {
      throw new BridgeError('Only models with a JSON topology can be stored in the browser',
        'unsupported');
    }
    return medium === 'localstorage' ? lsWrite(path, artifacts, options)
      : idbWrite(path, artifacts, options);
  }

  async function removeBrowserModel(url) {
    const {medium, path} = parseUrl(url);
    return medium === 'localstorage' ? lsRemove(path) : idbRemove(path);
  }

  /** Browser model -> store. Returns the server's reply {name, modelArtifactsInfo, files}. */
  async function push(url, name, options) {
    options = options || {};
    const {path} = parseUrl(url);
    name = name || path;
    progress(options.onProgress, 'read', 0, 0);
    const artifacts = await readBrowserModel(url);
    const result = await storeUpload(name, artifacts, options);
    progress(options.onProgress, 'done', 1, 1);
    return result;
  }

  /** Store model -> browser store (all or nothing). Returns the new ModelArtifactsInfo. */
  async function pull(name, url, options) {
    options = options || {};
    const {medium, path} = parseUrl(url);
    if (!options.overwrite) {
      const existing = medium === 'localstorage' ? lsList() : await idbList();
      if (url in existing) {
        throw new BridgeError(`${url} already exists; pass overwrite to replace it`, 'exists');
      }
    }
    const artifacts = await storeFetch(name, options.onProgress);
    const total = byteLength(artifacts.weightData);
    progress(options.onProgress, 'write', 0, total);
    const info = await writeBrowserModel(url, artifacts, {
      overwrite: options.overwrite,
      onQueued: options.onQueued,
    });
    progress(options.onProgress, 'done', total, total);
    return info;
  }

  function configure(options) {
    if (options.api) config.api = new URL(options.api, window.location.href).href;
    if (options.headers) config.headers = {...options.headers};
    if ('token' in options) {
      const headers = {...config.headers};
      delete headers.Authorization;
      if (options.token) headers.Authorization = `Bearer ${options.token}`;
      config.headers = headers;
    }
    return {api: config.api, headers: {...config.headers}};
  }

  // ------------------------------------------------------------------- UI

  function formatBytes(n) {
    if (n == null) return '?';
    const units = ['B', 'KiB', 'MiB', 'GiB'];
    let value = n;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit++;
    }
    return unit === 0 ? `${n} B` : `${value.toFixed(1)} ${units[unit]}`;
  }

  function formatDate(value) {
    if (!value) return '';
    const date = new Date(value);
    return isNaN(date) ? String(value) : date.toISOString().replace('T', ' ').slice(0, 16);
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
      else if (v != null) node.setAttribute(k, v);
    }
    for (const child of children) {
      if (child != null) node.append(child);
    }
    return node;
  }

  function infoCells(info) {
    info = info || {};
    return [
      el('td', {}, formatDate(info.dateSaved)),
      el('td', {class: 'num'}, formatBytes(info.modelTopologyBytes)),
      el('td', {class: 'num'}, formatBytes(info.weightSpecsBytes)),
      el('td', {class: 'num', 'data-bytes': info.weightDataBytes},
        formatBytes(info.weightDataBytes)),
    ];
  }

  const HEAD = ['saved', 'topology', 'specs', 'weights'];

  function mount(root) {
    const ui = {};
    root.classList.add('tfjsfs-bridge');
    ui.status = el('div', {class: 'status', role: 'status'}, 'Ready.');
    ui.bar = el('progress', {max: '1', value: '0'});
    ui.error = el('div', {class: 'error', role: 'alert', hidden: ''});
    ui.browser = el('tbody');
    ui.store = el('tbody');
    ui.storeName = el('span', {class: 'store-name'}, '…');
    const table = (body, first, extra) => el('table', {},
      el('thead', {}, el('tr', {}, el('th', {}, first),
        ...HEAD.map((h) => el('th', {}, h)), el('th', {}, extra))), body);
    const token = el('input', {type: 'password', size: '14', autocomplete: 'off',
      placeholder: 'if the server needs one', 'aria-label': 'bearer token'});
    token.addEventListener('change', () => {
      configure({token: token.value.trim()});
      refresh();
    });
    root.append(
      el('div', {class: 'progress-line'}, ui.bar, ui.status,
        el('label', {class: 'token'}, 'Token ', token),
        el('button', {type: 'button', onclick: () => refresh()}, 'Refresh')),
      ui.error,
      el('div', {class: 'columns'},
        el('section', {id: 'browser-models'},
          el('h2', {}, 'This browser ', el('small', {}, window.location.origin)),
          table(ui.browser, 'model', 'push to store as')),
        el('section', {id: 'store-models'},
          el('h2', {}, 'Store ', el('small', {}, ui.storeName)),
          table(ui.store, 'name', 'pull into this browser'))));

    function showError(err) {
      ui.error.textContent = err ? String(err.message || err) : '';
      ui.error.hidden = !err;
    }
    function onProgress(p) {
      ui.bar.value = p.fraction;
      ui.status.textContent = `${p.phase}: ${formatBytes(p.loaded)} of ` +
        `${formatBytes(p.total)}`;
    }
    /** Runs action(overwrite); an 'exists' failure asks before replacing. */
    async function run(label, action) {
      showError(null);
      ui.status.textContent = label + '…';
      ui.bar.value = 0;
      try {
        try {
          await action(false);
        } catch (err) {
          if (err.kind !== 'exists' || !window.confirm(`${err.message}\n\nReplace it?`)) {
            throw err;
          }
          await action(true);
        }
        ui.status.textContent = label + ': done.';
        ui.bar.value = 1;
      } catch (err) {
        ui.status.textContent = label + ': failed.';
        showError(err);
      }
      await refresh();
    }

    async function refresh() {
      const browser = await listBrowserModels();
      ui.browser.replaceChildren(...Object.keys(browser).sort().map((url) => {
        const input = el('input', {value: parseUrl(url).path, size: '12',
          'aria-label': `store name for ${url}`});
        return el('tr', {'data-url': url}, el('td', {class: 'url'}, url),
          ...infoCells(browser[url]),
          el('td', {}, input, el('button', {type: 'button', onclick: () => run(`Push ${url}`,
            (overwrite) => push(url, input.value, {onProgress, overwrite}))}, 'Push')));
      }));
      if (!ui.browser.children.length) {
        ui.browser.append(el('tr', {}, el('td', {colspan: '6', class: 'empty'},
          'No TF.js models in this browser (localStorage, IndexedDB).')));
      }
      let listing;
      try {
        listing = await storeList();
      } catch (err) {
        showError(err);
        return;
      }
      ui.storeName.textContent = listing.store;
      ui.store.replaceChildren(...listing.models.map((m) => {
        const input = el('input', {value: m.name, size: '12',
          'aria-label': `browser path for ${m.name}`});
        const pullTo = (scheme) => () => run(`Pull ${m.name} into ${scheme}${input.value}`,
          (overwrite) => pull(m.name, scheme + input.value, {onProgress, overwrite}));
        return el('tr', {'data-name': m.name}, el('td', {class: 'url'}, m.name),
          ...infoCells(m.modelArtifactsInfo),
          el('td', {}, input,
            el('button', {type: 'button', onclick: pullTo(LS_SCHEME)}, '→ localStorage'),
            el('button', {type: 'button', onclick: pullTo(IDB_SCHEME)}, '→ IndexedDB')));
      }));
      if (!ui.store.children.length) {
        ui.store.append(el('tr', {}, el('td', {colspan: '6', class: 'empty'},
          'The store has no models yet.')));
      }
    }

    api.refresh = refresh;
    return refresh();
  }

  const api = {
    version: 1,
    BridgeError,
    configure,
    listBrowserModels,
    listStoreModels,
    readBrowserModel,
    writeBrowserModel,
    removeBrowserModel,
    push,
    pull,
    mount,
    refresh: async () => {},
    artifactsInfo,
  };
  window.tfjsfsBridge = api;
  window.dispatchEvent(new CustomEvent('tfjsfs-bridge-ready', {detail: api}));

  const auto = currentScript && currentScript.dataset.mount;
  if (auto) {
    const start = () => {
      const node = document.querySelector(auto);
      if (node) {
        api.ready = mount(node);
      }
    };
    if (document.readyState === 'loading') {
      document.addEventListener('DOMContentLoaded', start);
    } else {
      start();
    }
  }
})();
