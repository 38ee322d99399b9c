"""Server benchmark: ``tfjsfs serve`` (local folder store) against nginx, a minimal
aiohttp upload handler and a Flask app.

Usage
-----
::

    python benchmarks/serve.py [--quick] [--json results.json] [--markdown tables.md]
    python benchmarks/run.py --serve [--quick]        # the same, as run.py's section

What runs
---------
The benchmark models ``big`` and ``small`` (``models.py``; converter layout, 4 MiB
shards) are linked into one store folder, ``STORE/<dir>/``. On 127.0.0.1:

- ``tfjsfs serve STORE`` (a child process, sendfile on, its access log on);
- nginx on the same folder (``servers.StaticServer``: ``sendfile on``, 2 workers, an
  access log);
- ``tfjsfs serve STORE --no-sendfile`` (the stepwise path every store took before);
- a Flask app written the way TF.js's "save and load" guide's server side is usually
  written (``request.files[...].save(...)``, ``send_from_directory``), on werkzeug's
  threaded server: what a user writes instead of ``tfjsfs serve``;
- for uploads, a minimal aiohttp handler that streams each multipart part to a file
  (the floor of what a server that receives TF.js's upload must do).

Rows
----
``download (curl)``
    model.json and every shard with ``curl -Z --parallel-max 8 -o /dev/null``; MB/s of
    weight bytes, median of interleaved rounds (each server once per round).
``download (tfjsfs loader)``
    ``tfjsfs.load_weights("tfjs+http://...")`` in fresh processes (``worker.py``: one
    warm-up, then timed runs), four of them in the order tfjsfs serve, nginx, nginx,
    tfjsfs serve, each timing half the rounds.
``upload (curl -F)``
    ``curl -F model.json=@... -F model.weights.bin=@...`` of the model as TF.js's
    ``model.save`` sends it (one weights part), median of interleaved rounds; MB/s of
    body bytes. ``tfjsfs serve`` validates the upload completely and publishes a bundle.
``S3``
    the ``big`` model in moto's S3 server: every shard with ``curl -Z -L`` from
    ``tfjsfs serve s3://...`` with ``--redirect-reads`` (307 to a presigned URL, the
    bytes come from moto) and without (proxied), against s3fs ``cat`` of the shards
    straight from moto.
``64 loaders``
    64 concurrent TF.js-style loaders (``crowd`` below: GET model.json, parse it, then
    every shard, at most 6 connections each, as a browser does), in one client
    process: total weight MB/s, model.json latency p50/p99 and the slowest loader's
    time over the median loader's (no starvation: close to 1).

Ratios are against nginx (downloads, crowd) and the minimal handler (uploads).
Targets: downloads and uploads >= 0.8x. Timing on a shared 2-core machine is noisy:
the tables give medians and the load average.

``python serve.py flask ROOT PORT``, ``python serve.py sink ROOT PORT`` and
``python serve.py crowd URL N JSON`` are the children's entries.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

#: Concurrent loaders of the crowd rows, and each one's connection limit (a browser's).
CROWD = 64
CROWD_CONNECTIONS = 6
TARGET = 0.8


# ------------------------------------------------------------------ children


def _flask_app(root):
    from flask import Flask, jsonify, request, send_from_directory

    app = Flask("tfjs-models")

    @app.post("/models/<name>")
    def save(name):  # as TF.js's save guide's server side: one file per form field
        folder = os.path.join(root, name)
        os.makedirs(folder, exist_ok=True)
        request.files["model.json"].save(os.path.join(folder, "model.json"))
        request.files["model.weights.bin"].save(os.path.join(folder, "model.weights.bin"))
        return jsonify({"saved": name}), 201

    @app.get("/models/<name>/<path:file>")
    def load(name, file):
        return send_from_directory(os.path.join(root, name), file)

    return app


def _run_flask(root, port):
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    _flask_app(root).run("127.0.0.1", int(port), threaded=True)


def _run_sink(root, port):
    """The minimal upload handler: every multipart part streamed to a file."""
    from aiohttp import web

    async def receive(request):
        reader = await request.multipart()
        folder = os.path.join(root, request.match_info["name"])
        os.makedirs(folder, exist_ok=True)
        while (part := await reader.next()) is not None:
            with open(os.path.join(folder, os.path.basename(part.name)), "wb") as f:
                while chunk := await part.read_chunk(1 << 20):
                    f.write(chunk)
        return web.json_response({"saved": True}, status=201)

    app = web.Application(client_max_size=0)
    app.router.add_post("/models/{name}", receive)
    web.run_app(app, host="127.0.0.1", port=int(port), print=None, access_log=None)


async def _crowd(base, n, connections):
    import aiohttp

    async def loader():
        timeout = aiohttp.ClientTimeout(total=1800)
        connector = aiohttp.TCPConnector(limit=connections)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            t0 = time.perf_counter()
            async with session.get(f"{base}/model.json") as reply:
                reply.raise_for_status()
                doc = json.loads(await reply.read())
            t_json = time.perf_counter() - t0

            async def shard(path):
                got = 0
                async with session.get(f"{base}/{path.removeprefix('./')}") as reply:
                    reply.raise_for_status()
                    async for chunk in reply.content.iter_chunked(1 << 20):
                        got += len(chunk)
                return got

            paths = [p for g in doc["weightsManifest"] for p in g["paths"]]
            got = sum(await asyncio.gather(*(shard(p) for p in paths)))
            return t_json, time.perf_counter() - t0, got

    t0 = time.perf_counter()
    results = await asyncio.gather(*(loader() for _ in range(n)))
    wall = time.perf_counter() - t0
    return {
        "wall": wall,
        "json": [r[0] for r in results],
        "total": [r[1] for r in results],
        "bytes": sum(r[2] for r in results),
    }


def _run_crowd(base, n, connections):
    print("RESULT " + json.dumps(asyncio.run(_crowd(base, int(n), int(connections)))))


# ------------------------------------------------------------------- servers


class Child:
    """A server in a child process on a free port (``base(name)`` gives a model's URL)."""

    def __init__(self, kind, cmd, port, prefix, env=None):
        self.kind = kind
        self.cmd = cmd
        self.port = port
        self.prefix = prefix
        self.env = env
        self.proc = None
        self.log = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def base(self, name):
        return f"{self.url}{self.prefix}/{name}"

    def __enter__(self):
        import servers

        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            self.cmd,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=self.log,
            env={**os.environ, "PYTHONPATH": REPO, **(self.env or {})},
        )
        try:
            servers._wait_port("127.0.0.1", self.port, self.proc, timeout=30)
        except Exception:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.log is not None:
            self.log.close()


def tfjsfs_serve(store, *args, storage_options=None):
    import servers

    port = servers.free_port()
    cmd = [sys.executable, "-m", "tfjsfs.server", store, "--port", str(port), *args]
    for key, value in (storage_options or {}).items():
        cmd.append(f"--storage-option={key}={value}")
    cmd += ["--max-upload-bytes", "4GiB"]
    return Child("tfjsfs serve", cmd, port, "/models")


def flask_app(store):
    import servers

    port = servers.free_port()
    return Child("flask", [sys.executable, __file__, "flask", store, str(port)], port, "/models")


def upload_sink(folder):
    import servers

    port = servers.free_port()
    return Child("sink", [sys.executable, __file__, "sink", folder, str(port)], port, "/models")


class Nginx:
    """nginx (``servers.StaticServer``) on the store folder, with ``base(name)``."""

    def __init__(self, store):
        import servers

        self.server = servers.StaticServer(store)

    def base(self, name):
        return f"{self.server.url}/{name}"

    def __enter__(self):
        self.server.__enter__()
        return self

    def __exit__(self, *exc):
        self.server.__exit__(*exc)


# ------------------------------------------------------------------ measures


def link_store(metas, store):
    """``STORE/<dir>/`` holding each model's model.json and shards (hard links;
    ``dir`` names the model's spec, so quick and full models never mix)."""
    for meta in metas.values():
        folder = os.path.join(store, meta["dir"])
        os.makedirs(folder, exist_ok=True)
        for file in ("model.json", *meta["paths"]):
            src, dst = os.path.join(meta["path"], file), os.path.join(folder, file)
            if not os.path.exists(dst):
                try:
                    os.link(src, dst)
                except OSError:
                    shutil.copyfile(src, dst)


def upload_files(meta, folder):
    """model.json and model.weights.bin as TF.js's ``model.save`` sends the model."""
    with open(os.path.join(meta["path"], "model.json"), "rb") as f:
        doc = json.load(f)
    weights = [w for g in doc["weightsManifest"] for w in g["weights"]]
    doc["weightsManifest"] = [{"paths": ["./model.weights.bin"], "weights": weights}]
    doc["format"] = doc.get("format") or "graph-model"
    json_path = os.path.join(folder, "model.json")
    with open(json_path, "w") as f:
        json.dump(doc, f)
    bin_path = os.path.join(folder, "model.weights.bin")
    with open(bin_path, "wb") as out:
        for path in meta["paths"]:
            with open(os.path.join(meta["path"], path), "rb") as f:
                shutil.copyfileobj(f, out, 1 << 22)
    return json_path, bin_path


def curl_download(base, meta, follow=False):
    urls = [f"{base}/model.json"] + [f"{base}/{p}" for p in meta["paths"]]
    cmd = ["curl", "-sS", "--no-progress-meter", "--fail", "-Z", "--parallel-max", "8"]
    if follow:
        cmd.append("-L")
    for url in urls:
        cmd += ["-o", "/dev/null", url]
    return _timed(cmd)


def _timed(cmd):
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    took = time.perf_counter() - t0
    if proc.returncode:
        raise RuntimeError(f"{cmd[0]} exit {proc.returncode}: {proc.stderr.strip()[-300:]}")
    return took


def curl_upload(url, json_path, bin_path):
    cmd = [
        "curl",
        "-sS",
        "--fail",
        "-o",
        "/dev/null",
        "-H",
        "Expect:",
        "-F",
        f"model.json=@{json_path};type=application/json",
        "-F",
        f"model.weights.bin=@{bin_path};type=application/octet-stream",
        url,
    ]
    return _timed(cmd)


def crowd(base, n=CROWD):
    proc = subprocess.run(
        [sys.executable, __file__, "crowd", base, str(n), str(CROWD_CONNECTIONS)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=3600,
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"crowd client failed: {proc.stderr.strip()[-500:]}")
    return json.loads(line.removeprefix("RESULT "))


def _pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def interleaved(rounds, contenders, measure):
    """``{name: [seconds per round]}``, each contender once per round, in turn."""
    times = {name: [] for name in contenders}
    for r in range(rounds):
        order = list(contenders) if r % 2 == 0 else list(reversed(contenders))
        for name in order:
            times[name].append(measure(name))
    return times


# --------------------------------------------------------------------- bench


def _row(label, mb_s, ratio, times, note=""):
    return [label, f"{mb_s:.0f}", "" if ratio is None else f"{ratio:.2f}", times, note]


def _times(values):
    return ", ".join(f"{v:.2f}" for v in values)


def run(bench):
    """Add the serve scenarios to a ``run.Bench``; return the targets checked."""
    import models

    rounds = 5 if bench.quick else 7
    metas = {name: bench.model(name) for name in ("big", "small")}
    for meta in metas.values():
        models.warm_page_cache(meta)
    tmp = tempfile.mkdtemp(prefix="tfjsfs-bench-serve-")
    targets = []
    try:
        # under the data folder: nginx's workers may not enter a private temp folder
        store = os.path.join(os.path.dirname(bench.root), "serve-store")
        link_store(metas, store)
        with contextlib.ExitStack() as stack:
            servers_ = {
                "tfjsfs serve": stack.enter_context(tfjsfs_serve(store)),
                "nginx": stack.enter_context(Nginx(store)),
                "tfjsfs serve --no-sendfile": stack.enter_context(
                    tfjsfs_serve(store, "--no-sendfile")
                ),
                "flask": stack.enter_context(flask_app(store)),
            }
            for name, meta in metas.items():
                targets += _downloads(bench, name, meta, servers_, rounds)
            for name, meta in metas.items():
                _crowds(bench, name, meta, servers_)
        for name, meta in metas.items():
            targets += _uploads(bench, name, meta, tmp, rounds)
        _s3(bench, metas["big"], 3)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return targets


def _downloads(bench, name, meta, servers_, rounds):
    mb = meta["nbytes"] / 1e6
    bench.log(f"  serve {name}: curl downloads, {rounds} rounds")
    times = interleaved(
        rounds, list(servers_), lambda s: curl_download(servers_[s].base(meta["dir"]), meta)
    )
    nginx = mb / statistics.median(times["nginx"])
    rows, targets = [], []
    for server, t in times.items():
        mb_s = mb / statistics.median(t)
        rows.append(_row(f"curl -Z: {server}", mb_s, mb_s / nginx, _times(t)))
        if server == "tfjsfs serve":
            targets.append(_target(name, "download, curl: tfjsfs serve / nginx", mb_s / nginx))
    # fresh worker processes, in the order A B B A (half the rounds each), so a change
    # of machine load over time falls on both servers alike
    loader, runs, errors = {}, {"tfjsfs serve": [], "nginx": []}, {}
    half = max(1, rounds // 2)
    for server in ("tfjsfs serve", "nginx", "nginx", "tfjsfs serve"):
        base = servers_[server].base(meta["dir"])
        ctx = {"base_url": base, "tfjsfs_url": "tfjs+" + base, "tfjsfs_options": {}}
        raw = bench.worker("tfjsfs", meta, ctx, half)
        if raw.get("error"):
            errors[server] = raw["error"][:200]
        elif not raw.get("verified", True):
            errors[server] = f"WRONG DATA: {raw.get('verify_error')}"
        else:
            runs[server] += raw["times"]
    for server, times in runs.items():
        if server in errors or not times:
            rows.append([f"tfjsfs loader: {server}", "", "", "", errors.get(server, "")])
            continue
        loader[server] = mb / statistics.median(times)
        rows.append(_row(f"tfjsfs loader: {server}", loader[server], None, _times(times)))
    if len(loader) == 2:
        ratio = loader["tfjsfs serve"] / loader["nginx"]
        rows[-2][2] = f"{ratio:.2f}"
        rows[-1][2] = "1.00"
        targets.append(_target(name, "download, tfjsfs loader: tfjsfs serve / nginx", ratio))
    headers = ["loader", "MB/s (median)", "x nginx", "seconds per round", "note"]
    bench.add(
        "serve",
        name,
        f"serve: downloads on 127.0.0.1, {meta['nbytes'] / 2**20:.0f} MiB, "
        f"{len(meta['paths'])} shards",
        [],
        table=[headers, rows],
    )
    return targets


def _crowds(bench, name, meta, servers_):
    n = CROWD
    bench.log(f"  serve {name}: {n} concurrent loaders")
    rows = []
    nginx = None
    for server in ("nginx", "tfjsfs serve"):
        got = crowd(servers_[server].base(meta["dir"]), n)
        if got["bytes"] != n * meta["nbytes"]:
            raise RuntimeError(f"{server}: crowd read {got['bytes']} bytes")
        mb_s = n * meta["nbytes"] / 1e6 / got["wall"]
        nginx = nginx or mb_s
        med = statistics.median(got["total"])
        rows.append(
            [
                f"{n} loaders: {server}",
                f"{mb_s:.0f}",
                f"{mb_s / nginx:.2f}",
                f"{_pct(got['json'], 0.5) * 1000:.1f}",
                f"{_pct(got['json'], 0.99) * 1000:.1f}",
                f"{max(got['total']):.2f}",
                f"{max(got['total']) / med:.2f}",
            ]
        )
    headers = [
        "loader",
        "total MB/s",
        "x nginx",
        "model.json p50 ms",
        "model.json p99 ms",
        "slowest loader s",
        "slowest / median",
    ]
    bench.add(
        "serve",
        name,
        f"serve: {n} concurrent TF.js-style loaders ({CROWD_CONNECTIONS} connections each)",
        [],
        table=[headers, rows],
    )


def _uploads(bench, name, meta, tmp, rounds):
    folder = os.path.join(tmp, f"upload-{name}")
    os.makedirs(folder)
    json_path, bin_path = upload_files(meta, folder)
    body = os.path.getsize(json_path) + os.path.getsize(bin_path)
    bench.log(f"  serve {name}: uploads, {rounds} rounds")
    targets = []
    with contextlib.ExitStack() as stack:
        dest = {}
        for kind in ("tfjsfs serve", "sink", "flask"):
            where = os.path.join(tmp, f"received-{name}-{kind.split()[0]}")
            os.makedirs(where)
            if kind == "tfjsfs serve":
                child = tfjsfs_serve(where, "--grace-period", "0")
            elif kind == "sink":
                child = upload_sink(where)
            else:
                child = flask_app(where)
            dest[kind] = stack.enter_context(child)
        times = interleaved(
            rounds,
            list(dest),
            lambda k: curl_upload(dest[k].base("upload"), json_path, bin_path),
        )
    floor = body / 1e6 / statistics.median(times["sink"])
    labels = {
        "tfjsfs serve": "tfjsfs serve (validated, published as a bundle)",
        "sink": "minimal aiohttp handler (each part streamed to a file)",
        "flask": "Flask app as in TF.js's save guide (werkzeug, threaded)",
    }
    rows = []
    for kind, t in times.items():
        mb_s = body / 1e6 / statistics.median(t)
        rows.append(_row(f"curl -F: {labels[kind]}", mb_s, mb_s / floor, _times(t)))
        if kind == "tfjsfs serve":
            targets.append(_target(name, "upload: tfjsfs serve / minimal handler", mb_s / floor))
    headers = ["loader", "MB/s (median)", "x minimal handler", "seconds per round", "note"]
    bench.add(
        "serve",
        name,
        f"serve: uploads on 127.0.0.1 ({body / 2**20:.0f} MiB body, one weights part)",
        [],
        table=[headers, rows],
    )
    return targets


def _s3(bench, meta, rounds):
    import s3fs
    import servers

    bench.log(f"  serve big: S3 (moto), {rounds} rounds")
    with servers.moto_s3([meta]) as s3, contextlib.ExitStack() as stack:
        store = f"s3://{s3['bucket']}"
        opts = s3["fs_options"]
        dest = {
            "--redirect-reads": stack.enter_context(
                tfjsfs_serve(store, "--redirect-reads", storage_options=opts)
            ),
            "proxying": stack.enter_context(tfjsfs_serve(store, storage_options=opts)),
        }
        fs = s3fs.S3FileSystem(skip_instance_cache=True, **opts)
        keys = [f"{s3['bucket']}/{meta['dir']}/{p}" for p in meta["paths"]]

        def measure(kind):
            if kind == "s3fs cat":
                t0 = time.perf_counter()
                got = fs.cat(keys)
                took = time.perf_counter() - t0
                if sum(len(v) for v in got.values()) != meta["nbytes"]:
                    raise RuntimeError("s3fs cat read the wrong byte count")
                return took
            return curl_download(dest[kind].base(meta["dir"]), meta, follow=True)

        times = interleaved(rounds, [*dest, "s3fs cat"], measure)
    mb = meta["nbytes"] / 1e6
    ref = mb / statistics.median(times["s3fs cat"])
    labels = {
        "--redirect-reads": "curl -Z -L: tfjsfs serve --redirect-reads (307 to moto)",
        "proxying": "curl -Z: tfjsfs serve, proxying",
        "s3fs cat": "s3fs cat of every shard, straight from moto",
    }
    rows = []
    for kind, t in times.items():
        mb_s = mb / statistics.median(t)
        rows.append(_row(labels[kind], mb_s, mb_s / ref, _times(t)))
    headers = ["loader", "MB/s (median)", "x s3fs cat", "seconds per round", "note"]
    bench.add(
        "serve",
        "big",
        f"serve: downloads from an S3 store (moto on 127.0.0.1, {s3['version']})",
        [],
        table=[headers, rows],
    )


def _target(model, what, value):
    return {
        "scenario": "serve",
        "model": model,
        "what": what,
        "key": "serve",
        "op": ">=",
        "bound": TARGET,
        "value": value,
        "pass": value >= TARGET,
        "note": "",
    }


def main(argv=None):
    import run as harness

    argv = list(sys.argv[1:] if argv is None else argv)
    return harness.main(["--only", "serve", *argv])


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("flask", "sink", "crowd"):
        entry = {"flask": _run_flask, "sink": _run_sink, "crowd": _run_crowd}[sys.argv[1]]
        entry(*sys.argv[2:])
    else:
        sys.exit(main())
