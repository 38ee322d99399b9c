"""The ``tfjsfs`` command line, run as a user runs it: a subprocess, its exit
status, its stdout (``--json`` parsed) and stderr, progress on a pseudo-terminal."""

from __future__ import annotations

import argparse
import ast
import csv
import fcntl
import io
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from manage_support import (
    TOPOLOGY,
    assert_same_weights,
    file_store,
    sample_artifacts,
    sample_weights,
)

import tfjsfs
from tfjsfs.errors import TransferError

SCRIPT = Path(sys.executable).parent / "tfjsfs"
TFJSFS = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "tfjsfs"]
SHARD = 300


def run(*args, env=None, input=None, check=None, timeout=120, text=True):
    """Run ``tfjsfs *args``; returns the CompletedProcess."""
    proc = subprocess.run(
        [*TFJSFS, *map(str, args)],
        capture_output=True,
        text=text,
        env={**os.environ, **(env or {})},
        input=input,
        timeout=timeout,
    )
    if check is not None:
        assert proc.returncode == check, (proc.stdout, proc.stderr)
    return proc


@pytest.fixture
def models(tmp_path):
    """A local folder with two bundles (one quantized) and a downloads-layout one."""
    store = file_store(tmp_path / "models")
    store.save(sample_artifacts(0), "mlp", shard_size=SHARD)
    store.save(sample_artifacts(1, quantize="uint8"), "mlp-q")
    store.save(sample_artifacts(2), "dl", layout="downloads", name="exported")
    return store


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("tfjsfs: error: ")
    assert "Traceback" not in stderr
    return lines[0]


def test_help_teaches_with_examples():
    out = run("--help", check=0).stdout
    for command in (
        "ls",
        "info",
        "cp",
        "mv",
        "rm",
        "verify",
        "cat",
        "serve",
        "quantize",
        "reshard",
        "scan",
    ):
        assert re.search(rf"^\s+{command}\s", out, re.M), command
    assert "examples:" in out and "tfjsfs cp -r" in out and "--option" in out
    for command in ("cp", "rm", "verify", "cat", "scan"):
        sub = run(command, "--help", check=0).stdout
        assert "example" in sub, command
    version = subprocess.run(
        [sys.executable, "-m", "tfjsfs", "--version"], capture_output=True, text=True
    )
    assert version.returncode == 0 and version.stdout.strip() == f"tfjsfs {tfjsfs.__version__}"
    assert run(check=2).stderr.startswith("usage:")
    assert run("frobnicate", check=2).returncode == 2


def test_ls_text_and_json(models):
    out = run("ls", models.base, check=0)
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["SIZE", "WEIGHTS", "SHARDS", "FORMAT", "URL"]
    assert [line.split()[-1] for line in lines[1:]] == [
        models.url("dl", "exported.json"),
        models.url("mlp"),
        models.url("mlp-q"),
    ]
    assert "3 model(s)" in out.stderr
    records = {r["url"]: r for r in json.loads(run("ls", "--json", models.base, check=0).stdout)}
    art = sample_artifacts(0)
    mlp = records[models.url("mlp")]
    assert mlp["weights"] == len(art.weight_specs)
    assert mlp["bytes"] == mlp["weightDataBytes"] == art.weight_data_bytes
    assert mlp["shards"] == len(models.files("mlp")) - 1
    assert mlp["quantization"] == [] and records[models.url("mlp-q")]["quantization"] == ["uint8"]
    assert mlp["modelTopologyBytes"] == art.info().model_topology_bytes


def test_info(models):
    out = run("info", models.url("mlp"), check=0).stdout
    assert re.search(r"^inputs\s+dense \[\?, 12\] float32$", out, re.M)
    assert re.search(r"^outputs\s+out \[\?, 3\]$", out, re.M)
    assert re.search(r"^dense\s+Dense\s+208$", out, re.M)  # 12*16 + 16 parameters
    assert re.search(r"^dense/kernel\s+\[12, 16\]\s+float32\s+-\s+768 B$", out, re.M)
    info = json.loads(run("info", "--json", models.url("mlp-q"), check=0).stdout)
    kernel = next(w for w in info["weights"] if w["name"] == "dense/kernel")
    assert kernel == {
        "name": "dense/kernel",
        "shape": [12, 16],
        "dtype": "float32",
        "quantization": "uint8",
        "bytes": 192,
    }
    assert [layer["name"] for layer in info["layers"]] == ["dense", "out"]
    assert info["weightDataBytes"] == sample_artifacts(1, quantize="uint8").weight_data_bytes


def test_cat_text_and_npy(models, tmp_path):
    text = run("cat", models.url("mlp"), "out/bias", check=0).stdout
    header, body = text.split("\n", 1)
    assert header == "# out/bias: shape [3], dtype float32"
    assert ast.literal_eval(body) == [0.0, 1.0, 2.0]
    words = run("cat", models.url("mlp"), "vocab", check=0).stdout
    assert "['alpha', '', 'ß']" in words
    target = tmp_path / "k.npy"
    run("cat", models.url("mlp"), "dense/kernel", "-O", target, check=0)
    assert np.load(target).tolist() == sample_weights(0)["dense/kernel"].tolist()
    raw = run("cat", "--npy", models.url("mlp-q"), "dense/kernel", text=False, check=0).stdout
    want = tfjsfs.load_weights(models.url("mlp-q"))["dense/kernel"]
    assert np.load(io.BytesIO(raw)).tolist() == want.tolist()
    line = _one_error_line(run("cat", models.url("mlp"), "nope", check=1).stderr)
    assert "no weights named 'nope'" in line


def test_cp_mv_rm_exit_codes_and_errors(models, tmp_path):
    dst = tmp_path / "out"
    out = run("cp", models.url("mlp"), dst / "a", check=0)
    assert re.match(r"copied .* \(\d+ files, [\d.]+ \w+, verified\)$", out.stdout.strip())
    assert_same_weights(tfjsfs.load_weights(dst / "a"), sample_weights(0))

    line = _one_error_line(run("cp", models.url("mlp"), dst / "a", check=1).stderr)
    assert "already exists (use --overwrite)" in line
    debug = run("--debug", "cp", models.url("mlp"), dst / "a", check=1).stderr
    assert "Traceback" in debug and "BundleExistsError" in debug
    run("cp", "--overwrite", models.url("mlp-q"), dst / "a", check=0)
    assert_same_weights(tfjsfs.load_weights(dst / "a"), tfjsfs.load_weights(models.url("mlp-q")))

    run(
        "cp", "--quantize", "float16", "--shard-size", "256", models.url("mlp"), dst / "h", check=0
    )
    doc = json.loads((dst / "h" / "model.json").read_text())
    assert (
        max((dst / "h" / p).stat().st_size for g in doc["weightsManifest"] for p in g["paths"])
        == 256
    )
    assert {
        w.get("quantization", {}).get("dtype") for w in doc["weightsManifest"][0]["weights"]
    } == {"float16"}

    run("mv", dst / "h", dst / "moved", check=0)
    assert not (dst / "h").exists() and (dst / "moved" / "model.json").exists()

    _one_error_line(run("info", tmp_path / "no-such-model", check=1).stderr)
    dry = run("rm", "--dry-run", dst / "moved", check=0).stdout.splitlines()
    assert dry[0].startswith("would remove") and dry[1].strip().endswith("model.json")
    assert (dst / "moved" / "model.json").exists()
    run("rm", dst / "moved", check=0)
    assert not (dst / "moved").exists()
    run("cp", "-r", models.base, tmp_path / "tree", check=0)
    assert sorted(tfjsfs.list_models(tmp_path / "tree")) == sorted(
        str(tmp_path / "tree" / p) for p in ("dl/exported.json", "mlp", "mlp-q")
    )
    out = run("rm", "-r", tmp_path / "tree", check=0)
    assert len(out.stdout.splitlines()) == 3
    assert tfjsfs.list_models(tmp_path / "tree") == {}


def test_verify_exit_codes_and_json(models):
    good = run("verify", "--values", models.url("mlp"), models.url("mlp-q"), check=0)
    assert good.stdout.split() == ["OK", models.url("mlp"), "OK", models.url("mlp-q")]
    doc = json.loads(models.fs.cat_file(models.inner("mlp", "model.json")))
    victim = doc["weightsManifest"][0]["paths"][0]
    os.remove(models.inner("mlp", victim))
    bad = run("verify", "-r", models.base, check=1)
    assert f"FAIL {models.url('mlp')}" in bad.stdout
    assert re.search(
        rf"^  .*{re.escape(victim)}: weight 'dense/kernel': weight shard is missing",
        bad.stdout,
        re.M,
    )
    report = json.loads(run("verify", "--json", "-r", models.base, check=1).stdout)
    assert [r["ok"] for r in report] == [True, False, True]
    (problem,) = report[1]["problems"]
    assert problem["weight"] == "dense/kernel" and problem["file"].endswith(victim)


def test_quantize_and_reshard_rewrite(models, tmp_path):
    run("quantize", "--dtype", "uint16", "--weights", "dense/*", models.url("mlp"), check=0)
    doc = json.loads(models.fs.cat_file(models.inner("mlp", "model.json")))
    quant = {
        w["name"]: w.get("quantization", {}).get("dtype")
        for g in doc["weightsManifest"]
        for w in g["weights"]
    }
    assert quant["dense/kernel"] == quant["dense/bias"] == "uint16" and quant["out/kernel"] is None
    run("reshard", "--shard-size", "1KiB", models.url("mlp"), tmp_path / "big", check=0)
    doc = json.loads((tmp_path / "big" / "model.json").read_text())
    assert [len(g["paths"]) for g in doc["weightsManifest"]] == [1, 1]
    got = tfjsfs.load_weights(tmp_path / "big")
    assert_same_weights(got, tfjsfs.load_weights(models.url("mlp")))
    assert run("reshard", models.url("mlp"), check=2).returncode == 2  # --shard-size required


def test_scan_csv(models):
    out = run("scan", "--csv", models.base, check=0).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["url"] for r in rows] == [
        models.url("dl", "exported.json"),
        models.url("mlp"),
        models.url("mlp-q"),
    ]
    assert {r["ok"] for r in rows} == {"True"}
    assert rows[2]["quantization"] == "uint8"


def test_storage_options_and_fsspec_config(s3_server, s3_bucket, models):
    url = f"s3://{s3_bucket}/zoo/mlp"
    opts = [f"--option={k}={v}" for k, v in s3_server.storage_options.items()]
    run("cp", *opts, models.url("mlp"), url, check=0)
    # the same options as fsspec configuration, from the environment
    env = {"FSSPEC_S3_ENDPOINT_URL": s3_server.endpoint_url}
    listing = json.loads(run("ls", "--json", f"s3://{s3_bucket}/zoo", env=env, check=0).stdout)
    assert [r["url"] for r in listing] == [url]
    # nested options parse as JSON values
    nested = ["-o", f"client_kwargs.endpoint_url={s3_server.endpoint_url}", "-o", "use_ssl=false"]
    run("verify", *nested, url, check=0)
    line = _one_error_line(run("ls", "-o", "broken", models.base, check=1).stderr)
    assert "not KEY=VALUE" in line


def _read_until_exit(fd: int, proc: subprocess.Popen, timeout: float = 60) -> bytes:
    chunks = []
    while True:
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            break
        try:
            data = os.read(fd, 65536)
        except OSError:  # the other end closed
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout)
    return b"".join(chunks)


def test_progress_bars_on_a_terminal_only(tmp_path):
    store = file_store(tmp_path / "src")
    big = {f"w{i}": np.full(50_000, i, np.float32) for i in range(8)}
    store.save(tfjsfs.ModelArtifacts.from_weights(TOPOLOGY, big), "m", shard_size=100_000)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 24x100
    proc = subprocess.Popen(
        [*TFJSFS, "cp", store.url("m"), tmp_path / "tty-copy"],
        stdout=subprocess.PIPE,
        stderr=slave,
    )
    os.close(slave)
    shown = _read_until_exit(master, proc).decode("utf-8", "replace")
    os.close(master)
    assert proc.returncode == 0
    assert re.search(r"cp m: +100%\|", shown), shown  # tqdm's bar, with our label
    assert "1.53M/1.53M" in shown and "B/s" in shown  # bytes, human-sized
    piped = run("cp", store.url("m"), tmp_path / "piped-copy", check=0)
    assert "%|" not in piped.stderr and piped.stderr == ""
    forced = run("--progress", "cp", store.url("m"), tmp_path / "forced-copy", check=0)
    assert "%|" in forced.stderr
    quiet = run("cp", "-q", "--overwrite", store.url("m"), tmp_path / "forced-copy", check=0)
    assert quiet.stderr == ""


def test_serve_hands_over_to_the_server(models):
    proc = subprocess.Popen(
        [*TFJSFS, "serve", models.base, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        match = re.search(r"at (http://127\.0\.0\.1:\d+)/", line)
        assert match, line + proc.stderr.read()
        with urllib.request.urlopen(match.group(1) + "/models/mlp/model.json", timeout=30) as resp:
            served = json.loads(resp.read())
        assert served == json.loads(models.fs.cat_file(models.inner("mlp", "model.json")))
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)


class _Served:
    """``tfjsfs serve … --port 0`` as a subprocess: its base URL, stopped with SIGINT."""

    def __init__(self, *args, env=None):
        self.proc = subprocess.Popen(
            [*TFJSFS, "serve", *map(str, args), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        line = self.proc.stdout.readline()
        match = re.search(r"at (http://127\.0\.0\.1:\d+)/", line)
        if not match:
            self.stop()
            raise AssertionError(line + self.stderr)
        self.url = match.group(1)
        self.stderr = ""

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        status = self.proc.wait(60)
        self.stderr = self.proc.stderr.read()
        return status


def _request(url, method="GET", headers=None, body=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def test_serve_options_tokens_from_the_environment(tmp_path):
    store = tmp_path / "served"
    allowed = ("http://127.0.0.1:5", "http://127.0.0.1:6")
    served = _Served(
        store,
        "--allow-origin",
        allowed[0],
        "--allow-origin",
        allowed[1],
        "--reshard",
        "1KiB",
        "--max-upload-bytes",
        "16KiB",
        "--shutdown-timeout",
        "5",
        env={"TFJSFS_TOKEN": "w-env", "TFJSFS_READ_TOKEN": "r-env"},
    )
    try:
        models = f"{served.url}/models"
        assert _request(models)[0] == 401
        assert _request(models, headers={"Authorization": "Bearer r-env"})[0] == 200
        small = tfjsfs.ModelArtifacts.from_weights({"x": 1}, {"w": np.arange(600, dtype="f4")})
        with pytest.raises(TransferError, match="401"):
            tfjsfs.save_model(small, f"{models}/m")
        tfjsfs.save_model(small, f"{models}/m", headers={"Authorization": "Bearer w-env"})
        big = tfjsfs.ModelArtifacts.from_weights({"x": 1}, {"w": np.zeros(5000, dtype="f4")})
        with pytest.raises(TransferError, match="413"):
            tfjsfs.save_model(big, f"{models}/big", headers={"Authorization": "Bearer w-env"})
        for origin, status in ((allowed[0], 200), (allowed[1], 200), ("http://127.0.0.1:7", 403)):
            preflight = _request(
                f"{models}/m",
                "OPTIONS",
                {"Origin": origin, "Access-Control-Request-Method": "POST"},
            )
            assert preflight[0] == status, origin
    finally:
        assert served.stop() == 0, served.stderr
    files = sorted(p.name for p in (store / "m").iterdir())
    assert files == [f"group1-shard{i}of3.bin" for i in (1, 2, 3)] + ["model.json"]
    assert [(store / "m" / f).stat().st_size for f in files[:3]] == [1024, 1024, 2400 - 2048]
    assert not (store / "big").exists()
    assert "w-env" not in served.stderr and "r-env" not in served.stderr


def test_serve_token_flag_works_but_warns(tmp_path):
    served = _Served(tmp_path / "s", "--token", "w-flag", "--no-cors")
    try:
        pushed = tfjsfs.ModelArtifacts.from_weights({"x": 1}, {"w": np.ones(3, dtype="f4")})
        with pytest.raises(TransferError, match="401"):
            tfjsfs.save_model(pushed, f"{served.url}/models/m")
        tfjsfs.save_model(
            pushed, f"{served.url}/models/m", headers={"Authorization": "Bearer w-flag"}
        )
        reply = _request(f"{served.url}/models", headers={"Origin": "http://127.0.0.1:5"})
        assert reply[0] == 200 and "Access-Control-Allow-Origin" not in reply[1]
    finally:
        assert served.stop() == 0
    assert re.search(r"warning: --token is visible .*\$TFJSFS_TOKEN", served.stderr)


def test_serve_and_the_server_module_share_one_option_set():
    from tfjsfs.cli.main import build_parser as cli_parser
    from tfjsfs.server.__main__ import build_parser as module_parser

    def flags(parser):
        return {s for a in parser._actions for s in a.option_strings}

    sub = next(a for a in cli_parser()._actions if isinstance(a, argparse._SubParsersAction))
    serve = sub.choices["serve"]
    module = module_parser()
    wanted = {
        "--allow-origin",
        "--shutdown-timeout",
        "--reshard",
        "--max-upload-bytes",
        "--token-env",
        "--read-token-env",
    }
    assert wanted <= flags(serve) and wanted <= flags(module)
    assert flags(module) - {"--storage-option"} <= flags(serve) | {"--option", "-o"}
    args = ["st", "--reshard", "2KiB", "--max-upload-bytes", "1MiB", "--allow-origin", "o"]
    a, b = serve.parse_args(args), module.parse_args(args)
    for key in ("store", "reshard", "max_upload_bytes", "origins", "shutdown_timeout", "port"):
        assert getattr(a, key) == getattr(b, key), key
    assert (a.reshard, a.max_upload_bytes) == (2048, 1024**2)
