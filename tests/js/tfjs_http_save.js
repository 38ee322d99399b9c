'use strict';
// node tests/js/tfjs_http_save.js MODEL URL [DUMP_PATH]
//
// Saves model MODEL (see tfjs_models.js) with TF.js's own http handler:
// model.save(URL), a multipart/form-data POST with the parts "model.json"
// and "model.weights.bin". Prints {modelArtifactsInfo, status, body} where
// status and body come from the server's response. With DUMP_PATH, also
// writes the expected.json-style dump of tfjs_save.js there. A non-2xx
// response makes TF.js throw ("BrowserHTTPRequest.save() failed ..."): exit 1.

const fs = require('fs');
const {init, emit, run, expectedDump} = require('./harness');
const {buildModel} = require('./tfjs_models');

run(async () => {
  const [modelName, url, dumpPath] = process.argv.slice(2);
  if (!modelName || !url) throw new Error('usage: tfjs_http_save.js MODEL URL [DUMP_PATH]');
  await init();
  const {model, input} = buildModel(modelName);
  if (dumpPath) {
    const {dump} = await expectedDump(modelName, model, input);
    fs.writeFileSync(dumpPath, JSON.stringify({layout: 'http', ...dump}));
  }
  const result = await model.save(url);
  const response = result.responses[0];
  emit({
    modelArtifactsInfo: result.modelArtifactsInfo,
    status: response.status,
    body: await response.text(),
  });
});
