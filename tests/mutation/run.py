"""Plant small, plausible bugs one at a time and check that the tests notice.

Each mutant is a textual patch of one defence in ``tfjsfs`` (the text it
replaces must occur exactly once) plus the tests that are meant to catch it.
For each mutant the package is copied to a temporary folder, patched, and
the tests run against the copy (``PYTHONPATH`` and the working directory point
at it; the test files themselves are the repository's). A mutant whose tests
all pass *survived*: a defence nothing protects.

Usage (from the repository root)::

    .venv/bin/python tests/mutation/run.py            # every mutant
    .venv/bin/python tests/mutation/run.py -k range   # mutants whose name has "range"
    .venv/bin/python tests/mutation/run.py --list

Exit status: 0 when every mutant was caught, 1 when one survived, 2 when the
unpatched package already fails the selected tests or a patch no longer applies.
It takes a few minutes; it is not part of CI.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LYING = "tests/test_lying_server.py"
BOUNDED = "tests/test_bounded_reads.py"


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str  # inside tfjsfs/
    old: str
    new: str
    tests: tuple[str, ...]
    what: str


MUTANTS = [
    Mutant(
        "short-body",
        "io/readers.py",
        "        if sink.position < needed:\n            raise Truncated(",
        "        if False:\n            raise Truncated(",
        (LYING, "tests/test_hotpath_robust.py"),
        "drop the 'body ended short' check: a clean short chunked body loads garbage",
    ),
    Mutant(
        "wrong-range",
        "io/readers.py",
        "if first != block.start + done or stop != block.end:",
        "if False:",
        (LYING, "tests/test_hotpath_ranges.py"),
        "accept a 206 for another byte range than the one asked",
    ),
    Mutant(
        "no-if-range",
        "io/readers.py",
        'headers["If-Range"] = state["etag"]',
        "pass",
        (LYING, "tests/test_hotpath_robust.py"),
        "resume a dropped shard without If-Range: a replaced file comes back stitched",
    ),
    Mutant(
        "content-range-total",
        "io/readers.py",
        "if total is not None and block.file_size is not None and total != block.file_size:",
        "if False:",
        (LYING, "tests/test_hotpath_ranges.py", "tests/test_http_load.py"),
        "ignore the total size a Content-Range states",
    ),
    Mutant(
        "body-past-range",
        "io/readers.py",
        "                    if exact:\n",
        "                    if False:\n",
        (LYING, BOUNDED),
        "accept a body longer than its Content-Range or than the shard (keep its start)",
    ),
    Mutant(
        "full-body-as-range",
        "io/readers.py",
        "        sink.reset(0, 0)\n",
        "        sink.reset(block.start, done)\n",
        (LYING, "tests/test_hotpath_ranges.py"),
        "take a 200 whole-file reply to a range request for the range asked",
    ),
    Mutant(
        "no-retry-on-length",
        "io/readers.py",
        "error.retryable = not self.bundle.sizes_guessed",
        "error.retryable = False",
        (BOUNDED,),
        "a Content-Length that disagrees with the plan fails at once (tiny shards)",
    ),
    Mutant(
        "unbounded-decode",
        "io/httpget.py",
        "room = None if limit is None else limit + 1",
        "room = None",
        (BOUNDED,),
        "decode a compressed (or read a plain) body without a bound",
    ),
    Mutant(
        "any-redirect",
        "io/httpget.py",
        'if follow == "never" or (follow == "same-origin" and there != start):',
        'if follow == "never":',
        (BOUNDED,),
        "follow cross-origin redirects of shards by default",
    ),
    Mutant(
        "too-long-shards",
        "io/bundle.py",
        "    _check_not_too_long(bundle, measured)\n",
        "",
        (BOUNDED,),
        "load a shard far longer than its group declares (200 MiB for 8 bytes)",
    ),
    Mutant(
        "json-cap",
        "io/bundle.py",
        "    if len(data) > cap:\n",
        "    if False:\n",
        (BOUNDED,),
        "read model.json at any size",
    ),
    Mutant(
        "stale-listing",
        "io/bundle.py",
        "if len(sizes) < len(listed) or not _agrees(bundle, sizes):",
        "if False:",
        ("tests/test_stale_listing.py",),
        "trust fsspec's cached directory listing",
    ),
    Mutant(
        "silent-retries",
        "_util/retry.py",
        "            logger.info(\n",
        "            (lambda *args: None)(\n",
        (BOUNDED,),
        "retry without logging",
    ),
    Mutant(
        "dequantize-off-by-a-step",
        "format/codec.py",
        "values = raw * np.float64(q.scale) + np.float64(q.min)",
        "values = (raw + 1.0) * np.float64(q.scale) + np.float64(q.min)",
        ("tests/test_local_io.py", "tests/test_hotpath_load.py", "tests/test_hotpath_stream.py"),
        "dequantization off by one quantization step (uint8/uint16)",
    ),
    Mutant(
        "string-trailing-bytes",
        "format/codec.py",
        "    if offset != len(view):\n",
        "    if False:\n",
        (LYING, "tests/test_format.py"),
        "string decoding ignores trailing bytes",
    ),
]


def run_tests(package_root: Path, tests: tuple[str, ...]) -> int:
    env = dict(os.environ, PYTHONPATH=str(package_root))
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider"]
    cmd += [str(ROOT / t) for t in tests]
    done = subprocess.run(cmd, cwd=package_root, env=env, capture_output=True, text=True)
    return done.returncode


def copy_package(into: Path) -> Path:
    shutil.copytree(ROOT / "tfjsfs", into / "tfjsfs", ignore=shutil.ignore_patterns("__pycache__"))
    return into


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", default="", help="only mutants whose name contains this")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTANTS if args.k in m.name]
    if args.list:
        for m in chosen:
            print(f"{m.name:24} tfjsfs/{m.path:18} {m.what}")
        return 0
    for m in chosen:
        count = (ROOT / "tfjsfs" / m.path).read_text().count(m.old)
        if count != 1:
            print(f"{m.name}: the text to patch occurs {count} times in tfjsfs/{m.path}")
            return 2
    tests = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
    with tempfile.TemporaryDirectory(prefix="tfjsfs-mutation-") as tmp:
        base = copy_package(Path(tmp) / "base")
        if run_tests(base, tests) != 0:
            print("the unpatched package fails the selected tests; fix that first")
            return 2
        survivors = []
        for m in chosen:
            root = copy_package(Path(tmp) / m.name)
            target = root / "tfjsfs" / m.path
            target.write_text(target.read_text().replace(m.old, m.new))
            code = run_tests(root, m.tests)
            caught = code == 1  # tests ran and failed (not a crash or collection error)
            print(f"{'caught  ' if caught else 'SURVIVED'} {m.name:24} {m.what} (exit {code})")
            if not caught:
                survivors.append(m.name)
            shutil.rmtree(root)
    print(f"\n{len(chosen) - len(survivors)} of {len(chosen)} planted bugs caught")
    if survivors:
        print("survived: " + ", ".join(survivors))
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
