'use strict';
// The tfjsfs server's pages: sortable tables, the model filter, the histogram
// of a tensor's values (its bytes fetched by Range from this server, drawn as
// inline SVG) and the upload form (TF.js's multipart form, as model.save sends
// it). Nothing is loaded from another host.
(function () {
  const SVG = 'http://www.w3.org/2000/svg';
  const BINS = 24;

  function cellValue(row, col) {
    const cell = row.cells[col];
    if (!cell) return '';
    return cell.dataset.sort !== undefined ? cell.dataset.sort : cell.textContent;
  }

  function sortTable(table, col, th) {
    const body = table.tBodies[0];
    const rows = Array.from(body.rows);
    const numeric = rows.every((r) => cellValue(r, col) !== '' && !isNaN(Number(cellValue(r, col))));
    const dir = th.getAttribute('aria-sort') === 'ascending' ? -1 : 1;
    rows.sort((a, b) => {
      const x = cellValue(a, col);
      const y = cellValue(b, col);
      return dir * (numeric ? Number(x) - Number(y) : x.localeCompare(y));
    });
    for (const other of table.tHead.rows[0].cells) other.removeAttribute('aria-sort');
    th.setAttribute('aria-sort', dir === 1 ? 'ascending' : 'descending');
    for (const row of rows) body.appendChild(row);
  }

  function initSorting() {
    for (const table of document.querySelectorAll('table.sortable')) {
      const head = table.tHead && table.tHead.rows[0];
      if (!head) continue;
      Array.from(head.cells).forEach((th, col) => {
        th.title = 'sort';
        th.addEventListener('click', () => sortTable(table, col, th));
      });
    }
  }

  function initFilter() {
    const input = document.getElementById('filter');
    const table = document.getElementById('models');
    if (!input || !table) return;
    input.addEventListener('input', () => {
      const needle = input.value.trim().toLowerCase();
      let shown = 0;
      for (const row of table.tBodies[0].rows) {
        const hit = row.dataset.name.toLowerCase().includes(needle);
        row.hidden = !hit;
        if (hit) shown += 1;
      }
      document.getElementById('count').textContent = String(shown);
    });
  }

  // ------------------------------------------------------------ histogram

  function float16(bits) {
    const sign = bits & 0x8000 ? -1 : 1;
    const exp = (bits >> 10) & 0x1f;
    const frac = bits & 0x3ff;
    if (exp === 0) return sign * Math.pow(2, -14) * (frac / 1024);
    if (exp === 31) return frac ? NaN : sign * Infinity;
    return sign * Math.pow(2, exp - 15) * (1 + frac / 1024);
  }

  function decode(buffer, weight) {
    const view = new DataView(buffer);
    const q = weight.quantization;
    const out = [];
    if (q) {
      const size = q.dtype === 'uint8' ? 1 : 2;
      for (let i = 0; i + size <= buffer.byteLength; i += size) {
        if (q.dtype === 'float16') out.push(float16(view.getUint16(i, true)));
        else {
          const v = size === 1 ? view.getUint8(i) : view.getUint16(i, true);
          out.push(v * q.scale + q.min);
        }
      }
      return out;
    }
    if (weight.dtype === 'bool') {
      for (let i = 0; i < buffer.byteLength; i += 1) out.push(view.getUint8(i));
      return out;
    }
    for (let i = 0; i + 4 <= buffer.byteLength; i += 4) {
      out.push(weight.dtype === 'int32' ? view.getInt32(i, true) : view.getFloat32(i, true));
    }
    return out;
  }

  async function fetchBytes(ranges) {
    const parts = [];
    for (const [url, start, end] of ranges) {
      if (end <= start) continue;
      const reply = await fetch(url, {headers: {Range: `bytes=${start}-${end - 1}`}});
      if (!reply.ok) throw new Error(`${url}: HTTP ${reply.status}`);
      let data = await reply.arrayBuffer();
      if (reply.status === 200) data = data.slice(start, end);
      parts.push(new Uint8Array(data));
    }
    const total = parts.reduce((n, p) => n + p.length, 0);
    const all = new Uint8Array(total);
    let at = 0;
    for (const p of parts) {
      all.set(p, at);
      at += p.length;
    }
    return all.buffer;
  }

  function svg(name, attrs) {
    const el = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
    return el;
  }

  // counts of BINS equal-width bins from min to max (the last bin closed),
  // with count, min, max and mean: the form tfjsfs info --html embeds
  function binValues(values) {
    const finite = values.filter((v) => Number.isFinite(v));
    let lo = Infinity;
    let hi = -Infinity;
    for (const v of finite) {
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    const counts = new Array(BINS).fill(0);
    const width = hi > lo ? (hi - lo) / BINS : 1;
    for (const v of finite) counts[Math.min(BINS - 1, Math.floor((v - lo) / width))] += 1;
    const mean = finite.reduce((a, b) => a + b, 0) / (finite.length || 1);
    return {bins: counts, count: values.length, min: lo, max: hi, mean};
  }

  function drawHistogram(target, hist) {
    const counts = hist.bins;
    const lo = hist.min;
    const width = hist.max > lo ? (hist.max - lo) / counts.length : 1;
    const top = Math.max(1, ...counts);
    const W = 480;
    const H = 160;
    const chart = svg('svg', {class: 'chart', viewBox: `0 0 ${W} ${H + 20}`, width: W, height: H + 20});
    counts.forEach((n, i) => {
      const h = (H * n) / top;
      const bar = svg('rect', {
        class: 'bin', x: (i * W) / counts.length, y: H - h, width: W / counts.length - 1,
        height: h, 'data-count': n, 'data-low': lo + i * width,
      });
      const tip = svg('title', {});
      tip.textContent = `${(lo + i * width).toPrecision(4)}…: ${n}`;
      bar.appendChild(tip);
      chart.appendChild(bar);
    });
    for (const [x, anchor, v] of [[0, 'start', lo], [W, 'end', hist.max]]) {
      const label = svg('text', {x, y: H + 14, 'text-anchor': anchor});
      label.textContent = Number.isFinite(v) ? v.toPrecision(4) : '';
      chart.appendChild(label);
    }
    target.replaceChildren(chart);
    for (const k of ['count', 'min', 'max', 'mean']) target.dataset[k] = String(hist[k]);
  }

  function initHistogram() {
    const select = document.getElementById('hist-weight');
    const data = document.getElementById('weights-data');
    if (!select || !data) return;
    const weights = JSON.parse(data.textContent);
    const target = document.getElementById('histogram');
    const stats = document.getElementById('hist-stats');
    async function show() {
      const weight = weights[Number(select.value)];
      target.dataset.state = 'loading';
      try {
        const s = weight.histogram || binValues(decode(await fetchBytes(weight.ranges), weight));
        drawHistogram(target, s);
        stats.textContent = `${s.count} values, min ${s.min.toPrecision(4)}, ` +
          `max ${s.max.toPrecision(4)}, mean ${s.mean.toPrecision(4)}`;
        target.dataset.weight = weight.name;
        target.dataset.state = 'done';
      } catch (err) {
        stats.textContent = `cannot read ${weight.name}: ${err.message}`;
        target.dataset.state = 'error';
      }
    }
    select.addEventListener('change', show);
    show();
  }

  // --------------------------------------------------------------- upload

  function baseName(path) {
    return path.split('/').pop();
  }

  async function uploadForm(event) {
    event.preventDefault();
    const status = document.getElementById('upload-status');
    const name = document.getElementById('upload-name').value.trim();
    const jsonFile = document.getElementById('upload-json').files[0];
    const picked = Array.from(document.getElementById('upload-weights').files);
    const token = document.getElementById('upload-token').value;
    status.dataset.state = 'sending';
    try {
      const doc = JSON.parse(await jsonFile.text());
      const byName = new Map(picked.map((f) => [f.name, f]));
      const blobs = [];
      const specs = [];
      for (const group of doc.weightsManifest || []) {
        for (const path of group.paths) {
          const file = byName.get(baseName(path));
          if (!file) throw new Error(`weight file ${baseName(path)} named in model.json was not picked`);
          blobs.push(file);
        }
        specs.push(...group.weights);
      }
      const out = Object.assign({}, doc);
      out.weightsManifest = [{paths: ['./model.weights.bin'], weights: specs}];
      const form = new FormData();
      form.append('model.json', new Blob([JSON.stringify(out)], {type: 'application/json'}), 'model.json');
      form.append('model.weights.bin', new Blob(blobs, {type: 'application/octet-stream'}), 'model.weights.bin');
      const headers = token ? {Authorization: `Bearer ${token}`} : {};
      const url = `/models/${name.split('/').map(encodeURIComponent).join('/')}`;
      const reply = await fetch(url, {method: 'POST', body: form, headers});
      const body = await reply.json();
      if (!reply.ok) throw new Error(body.error || body.message || `HTTP ${reply.status}`);
      status.textContent = `stored ${body.name}: ${body.modelArtifactsInfo.weightDataBytes} weight bytes`;
      status.dataset.state = 'done';
    } catch (err) {
      status.textContent = `upload failed: ${err.message}`;
      status.dataset.state = 'error';
    }
  }

  function initUpload() {
    const form = document.getElementById('upload');
    if (form) form.addEventListener('submit', uploadForm);
  }

  function init() {
    initSorting();
    initFilter();
    initHistogram();
    initUpload();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
