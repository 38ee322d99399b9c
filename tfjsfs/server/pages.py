"""The model server's pages for people: the model index and one model's description.

Pure rendering (no I/O): :func:`index_html` and :func:`model_html` build
the body HTML, :func:`page` wraps it in ``static/server_page.html`` with the
pages' script (``static/pages.js``, served as ``/pages.js``: sorting,
filtering, the tensor histogram and the upload form) and
:func:`standalone_page` makes one self-contained file of it. Pictures are
inline SVG; nothing loads from another host. Every value from a store or a
request is escaped.
"""

from __future__ import annotations

import html
import importlib.resources
import json
import string
import urllib.parse
from collections import Counter
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from ..format.layout_view import layer_of, loader_call
from ..format.summary import human_size
from ..io.found import FoundBundle

__all__ = [
    "index_html",
    "model_html",
    "page",
    "pages_script",
    "quote_name",
    "render_page",
    "standalone_page",
]

#: Width in SVG units of the longest bar of the per-layer chart.
BAR_WIDTH = 400
BAR_HEIGHT = 16


def quote_name(name: str) -> str:
    """A model name (or file path) quoted for a URL path; ``/`` stays."""
    return urllib.parse.quote(name, safe="/")


def _static(name: str) -> str:
    return importlib.resources.files("tfjsfs").joinpath("static", name).read_text("utf-8")


def pages_script() -> bytes:
    """The pages' script, ``static/pages.js``."""
    return _static("pages.js").encode("utf-8")


def render_page(title: str, body: str, script: str) -> str:
    """*body* in the page template, with *script* (a ``<script>`` element)."""
    return string.Template(_static("server_page.html")).substitute(
        title=html.escape(title), body=body, script=script
    )


def page(title: str, body: str) -> web.Response:
    """An HTML reply: *body* in the server's page template, with ``/pages.js``."""
    text = render_page(title, body, '<script src="/pages.js"></script>')
    return web.Response(text=text, content_type="text/html", charset="utf-8")


def standalone_page(title: str, body: str) -> str:
    """One self-contained HTML file: the page with its script inline."""
    code = _static("pages.js").replace("</", "<\\/")
    return render_page(title, body, f"<script>{code}</script>")


def _json_data(element_id: str, value: Any) -> str:
    """*value* as an inert JSON data block the script reads (not executed)."""
    text = json.dumps(value, separators=(",", ":")).replace("</", "<\\/")
    return f'<script type="application/json" id="{element_id}">{text}</script>'


def _upload_form() -> str:
    return (
        '<h2>Upload a model</h2><form id="upload" class="upload">'
        '<label>name <input name="name" id="upload-name" required '
        'placeholder="my-model"></label> '
        '<label>model.json <input type="file" id="upload-json" accept=".json" required></label> '
        '<label>weight files <input type="file" id="upload-weights" multiple></label> '
        '<label>token <input type="password" id="upload-token" autocomplete="off" '
        'placeholder="if the server needs one"></label> '
        '<button type="submit">upload</button> <output id="upload-status"></output></form>'
    )


def index_html(base: str, store: str, summaries: Sequence[FoundBundle]) -> str:
    """The index: a filterable, sortable table of models, their total size, an
    upload form, and how to save and load one.

    Parameters
    ----------
    base : str
        The server's origin, e.g. ``http://127.0.0.1:8080`` (from its bound
        address, never from the ``Host`` header).
    store : str
        What clients are told about the store (its name, not its location).
    summaries : sequence of FoundBundle
    """
    e = html.escape
    rows = []
    for s in summaries:
        date = s.saved.strftime("%Y-%m-%d %H:%M UTC") if s.saved else "?"
        stamp = s.saved.timestamp() if s.saved else 0
        warn = ' <span class="warn">(incomplete)</span>' if s.missing or s.error else ""
        rows.append(
            f'<tr data-name="{e(s.name)}"><td data-sort="{e(s.name)}">'
            f'<a href="/models/{e(quote_name(s.name))}">{e(s.name)}</a>{warn}</td>'
            f"<td>{e(s.format or '—')}</td>"
            f'<td class="num">{s.weight_count}</td>'
            f'<td class="num" data-sort="{s.size}">{e(human_size(s.size))}</td>'
            f'<td data-sort="{stamp}">{e(date)}</td></tr>'
        )
    total = sum(s.size for s in summaries)
    table = (
        '<p><label>filter <input type="search" id="filter" placeholder="model name"></label></p>'
        '<table id="models" class="sortable"><thead><tr><th>model</th><th>format</th>'
        '<th class="num">weights</th><th class="num">size</th><th>saved</th></tr></thead>'
        "<tbody>" + "".join(rows) + "</tbody></table>"
        if rows
        else '<p class="empty">No models yet.</p>'
    )
    base = e(base)
    return (
        f"<h1>TF.js models</h1><p class='sub'><span id='count'>{len(summaries)}</span> in "
        f"<code>{e(store)}</code>, <span id='total' data-bytes='{total}'>"
        f"{e(human_size(total))}</span> in all · <a href='/models'>JSON</a></p>{table}"
        f"{_upload_form()}"
        "<h2>Save a model here</h2>"
        f"<pre>await model.save('{base}/models/my-model');</pre>"
        "<h2>Load it back</h2>"
        f"<pre>{e(loader_call('layers-model', f'{base}/models/my-model/model.json'))}\n"
        f"{e(loader_call('graph-model', f'{base}/models/my-graph/model.json'))}</pre>"
    )


def _table(header: str, rows: str, attrs: str = "") -> str:
    return f"<table{attrs}><thead>{header}</thead><tbody>{rows}</tbody></table>"


def _topology_html(topo: dict[str, Any]) -> str:
    e = html.escape
    if topo.get("layers"):
        rows = "".join(
            f"<tr><td>{e(str(x.get('name')))}</td><td>{e(str(x.get('className')))}</td></tr>"
            for x in topo["layers"]
        )
        return "<h2>Layers</h2>" + _table("<tr><th>name</th><th>class</th></tr>", rows)
    if topo.get("ops"):
        rows = "".join(
            f"<tr><td>{e(op)}</td><td class='num'>{n}</td></tr>" for op, n in topo["ops"].items()
        )
        return "<h2>Ops</h2>" + _table("<tr><th>op</th><th class='num'>nodes</th></tr>", rows)
    return ""


def _shape(shape: Any) -> str:
    if shape is None:
        return "?"
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _tensors_html(title: str, element_id: str, tensors: Sequence[dict[str, Any]]) -> str:
    e = html.escape
    if not tensors:
        return f"<h2>{title}</h2><p class='empty'>not stated in model.json</p>"
    rows = "".join(
        f"<tr><td>{e(str(t['name']))}</td><td>{e(_shape(t.get('shape')))}</td>"
        f"<td>{e(str(t.get('dtype') or '?'))}</td></tr>"
        for t in tensors
    )
    head = "<tr><th>name</th><th>shape</th><th>dtype</th></tr>"
    return f"<h2>{title}</h2>" + _table(head, rows, f' id="{element_id}"')


def _quantization(weights: Sequence[dict[str, Any]]) -> str:
    counts = Counter(w["quantization"]["dtype"] for w in weights if "quantization" in w)
    if not counts:
        return "none"
    return ", ".join(f"{dtype} ({n} of {len(weights)} weights)" for dtype, n in counts.items())


def layer_bytes(weights: Sequence[dict[str, Any]]) -> list[tuple[str, int]]:
    """Stored weight bytes per layer (weight name up to its last ``/``), in order."""
    out: dict[str, int] = {}
    for w in weights:
        layer = layer_of(w["name"])
        out[layer] = out.get(layer, 0) + (w["bytes"] or 0)
    return list(out.items())


def _bar_chart(weights: Sequence[dict[str, Any]]) -> str:
    e = html.escape
    bars = layer_bytes(weights)
    if not bars:
        return ""
    top = max(n for _, n in bars) or 1
    label_w = 260
    height = BAR_HEIGHT + 4
    parts = []
    for i, (layer, n) in enumerate(bars):
        y = i * height
        width = round(BAR_WIDTH * n / top, 2)
        parts.append(
            f"<g><title>{e(layer)}: {n} bytes</title>"
            f'<text x="{label_w - 6}" y="{y + 12}" text-anchor="end">{e(layer[-40:])}</text>'
            f'<rect class="bar" x="{label_w}" y="{y}" width="{width}" height="{BAR_HEIGHT}" '
            f'data-layer="{e(layer)}" data-bytes="{n}"></rect>'
            f'<text x="{label_w + width + 4}" y="{y + 12}">{e(human_size(n))}</text></g>'
        )
    total_w = label_w + BAR_WIDTH + 90
    total_h = height * len(bars)
    return (
        "<h2>Weight bytes per layer</h2>"
        f'<svg id="layer-bytes" class="chart" viewBox="0 0 {total_w} {total_h}" '
        f'width="{total_w}" height="{total_h}" role="img" aria-label="weight bytes per layer">'
        + "".join(parts)
        + "</svg>"
    )


def _weights_table(weights: Sequence[dict[str, Any]]) -> str:
    e = html.escape
    rows = []
    for i, w in enumerate(weights):
        quant = w["quantization"]["dtype"] if "quantization" in w else ""
        count = 1
        for d in w["shape"]:
            count *= d
        rows.append(
            f'<tr data-index="{i}"><td data-sort="{e(w["name"])}">{e(w["name"])}</td>'
            f"<td>{e(_shape(w['shape']))}</td>"
            f'<td class="num" data-sort="{count}">{count}</td>'
            f"<td>{e(w['dtype'])}</td><td>{e(quant)}</td>"
            f"<td>{e(str(w.get('group') or ''))}</td>"
            f'<td class="num" data-sort="{w["bytes"] if w["bytes"] is not None else -1}">'
            f"{w['bytes'] if w['bytes'] is not None else '?'}</td></tr>"
        )
    head = (
        "<tr><th>name</th><th>shape</th><th class='num'>elements</th><th>dtype</th>"
        "<th>quantized</th><th>group</th><th class='num'>bytes</th></tr>"
    )
    return "<h2>Weights</h2>" + _table(head, "".join(rows), ' id="weights" class="sortable"')


def _histogram_html(weights: Sequence[dict[str, Any]]) -> str:
    e = html.escape
    options = "".join(
        f'<option value="{i}">{e(w["name"])}</option>'
        for i, w in enumerate(weights)
        if w["dtype"] != "string" and (w.get("ranges") or w.get("histogram"))
    )
    if not options:
        return ""
    return (
        "<h2>Values of a tensor</h2>"
        f'<p><label>tensor <select id="hist-weight">{options}</select></label> '
        '<output id="hist-stats"></output></p><div id="histogram"></div>'
    )


def _groups_html(groups: Sequence[dict[str, Any]]) -> str:
    e = html.escape
    rows = []
    for g in groups:
        for k, f in enumerate(g["files"]):
            lead = (
                f'<td rowspan="{len(g["files"])}">{g["index"] + 1}</td>'
                f'<td class="num" rowspan="{len(g["files"])}">{g["weights"]}</td>'
                if k == 0
                else ""
            )
            size = f["size"]
            rows.append(
                f"<tr>{lead}<td><a href='{e(f['url'])}'>{e(f['path'])}</a></td>"
                f"<td class='num'>{e(human_size(size)) if size is not None else 'missing'}</td>"
                "</tr>"
            )
    head = (
        "<tr><th>group</th><th class='num'>weights</th><th>shard</th>"
        "<th class='num'>size</th></tr>"
    )
    return "<h2>Weight groups and shards</h2>" + _table(head, "".join(rows), ' id="groups"')


def model_html(d: dict[str, Any]) -> str:
    """One model's page, from its JSON description (``GET /models/{name}``).

    Shows the loader call for its format, inputs and outputs, signature,
    quantization, a sortable weight table, weight bytes per layer (inline
    SVG), weight groups and shards, and a histogram of a chosen tensor's
    values (drawn by ``pages.js`` from byte ranges of the shards).
    """
    e = html.escape
    topo = d["topology"]
    summary = d.get("summary") or {}
    weights = d["weights"]
    facts = [
        ("format", d["format"]),
        ("generated by", d["generatedBy"]),
        ("converted by", d["convertedBy"]),
        ("topology", summary.get("class") or topo.get("className") or topo.get("kind")),
        ("parameters", summary.get("parameters")),
        ("weights", d["weightCount"]),
        ("weight bytes", human_size(d["weightBytes"])),
        ("quantization", _quantization(weights)),
        ("groups / shards", f"{summary.get('groups', '?')} / {summary.get('shards', '?')}"),
        ("size", human_size(d["size"])),
        ("saved", d["modelArtifactsInfo"]["dateSaved"]),
    ]
    fact_rows = "".join(
        f"<tr><th>{e(k)}</th><td>{e(str(v) if v is not None else '—')}</td></tr>" for k, v in facts
    )
    signature = d.get("signature")
    sig = (
        "<h2>Signature</h2><details><summary>signature of model.json</summary>"
        f"<pre id='signature'>{e(json.dumps(signature, indent=1))}</pre></details>"
        if signature
        else ""
    )
    files = "".join(
        f"<tr><td><a href='{e(f['url'])}'>{e(f['path'])}</a></td>"
        f"<td class='num'>{e(human_size(f['size']))}</td></tr>"
        for f in d["files"]
    )
    served = d.get("url") is not None  # else a standalone page (tfjsfs info --html)
    back = "<p><a href='/'>← all models</a></p>" if served else ""
    json_link = f"<p><a href='{e(d['url'])}?format=json'>JSON</a></p>" if served else ""
    keys = ("name", "dtype", "shape", "quantization", "ranges", "histogram")
    data = [{k: w.get(k) for k in keys} for w in weights]
    return (
        f"{back}<h1>{e(d['name'])}</h1>"
        f"<table id='facts'>{fact_rows}</table>"
        f"<pre id='loader'>{e(loader_call(d['format'], d['modelUrl']))}</pre>"
        f"{_tensors_html('Inputs', 'inputs', summary.get('inputs') or [])}"
        f"{_tensors_html('Outputs', 'outputs', summary.get('outputs') or [])}"
        f"{sig}{_bar_chart(weights)}{_histogram_html(weights)}{_weights_table(weights)}"
        f"{_groups_html(d.get('groups') or [])}{_topology_html(topo)}"
        f"<h2>Files</h2><table><tr><th>file</th><th class='num'>size</th></tr>{files}</table>"
        f"{json_link}"
        f"{_json_data('weights-data', data)}"
    )
