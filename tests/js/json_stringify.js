'use strict';
// JSON.stringify of values sent by the Python tests, for byte-exact comparison.
//
// Usage: node json_stringify.js VALUES.json
// VALUES.json holds a JSON array; every float travels as {"$f": "<16 hex digits>"}
// (its IEEE-754 bytes, big-endian) so no value is rounded on the way. Prints
// {"texts": [JSON.stringify(value), ...]} as its last line.

const fs = require('fs');

function revive(value) {
  if (Array.isArray(value)) return value.map(revive);
  if (value !== null && typeof value === 'object') {
    const keys = Object.keys(value);
    if (keys.length === 1 && keys[0] === '$f') {
      return Buffer.from(value.$f, 'hex').readDoubleBE(0);
    }
    const out = {};
    for (const key of keys) {  // defineProperty: "__proto__" is a key like any other
      Object.defineProperty(out, key, {
        value: revive(value[key]), enumerable: true, writable: true, configurable: true,
      });
    }
    return out;
  }
  return value;
}

const values = JSON.parse(fs.readFileSync(process.argv[2], 'utf8')).map(revive);
// ASCII only, so no character of a text can split the printed line
const line = JSON.stringify({texts: values.map((v) => JSON.stringify(v))});
console.log(line.replace(/[\u007f-\uffff]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0')));
