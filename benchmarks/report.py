"""Machine description and the result tables (plain text and Markdown).

``python report.py results.json`` prints the Markdown tables of a saved run (used to
fill ``RESULTS.md``).
"""

import json
import os
import platform
import subprocess
import sys


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _version(module):
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return None


def machine_info(repo):
    """CPU, cores, memory, kernel and the versions of everything measured."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in _read("/proc/cpuinfo").splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem = next(
        (
            int(line.split()[1]) * 1024
            for line in _read("/proc/meminfo").splitlines()
            if line.startswith("MemTotal:")
        ),
        None,
    )
    import numpy

    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_bytes": mem,
        "kernel": platform.release(),
        "os": _pretty_os(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
    }
    for mod in ("tfjsfs", "fsspec", "aiohttp", "s3fs", "gcsfs", "moto", "tensorflowjs"):
        info[mod] = _version(mod)
    try:
        info["node"] = subprocess.run(
            ["node", "--version"], capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        info["node"] = None
    pkg = os.path.join(repo, "node_modules", "@tensorflow", "tfjs", "package.json")
    info["tfjs"] = json.loads(_read(pkg) or "{}").get("version")
    rev = subprocess.run(
        ["git", "-C", repo, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    dirty = subprocess.run(
        ["git", "-C", repo, "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
    )
    info["git"] = (rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")) or None
    return info


def _pretty_os():
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return platform.system()


def machine_line(m):
    mem = f"{m['memory_bytes'] / 2**30:.1f} GiB" if m.get("memory_bytes") else "?"
    return (
        f"{m['cpu']}, {m['cores']} cores, {mem}, {m['os']}, kernel {m['kernel']}; "
        f"Python {m['python']}, numpy {m['numpy']}, fsspec {m['fsspec']}, "
        f"aiohttp {m['aiohttp']}, s3fs {m['s3fs']}, gcsfs {m['gcsfs']}, moto {m['moto']}, "
        f"tensorflowjs {m['tensorflowjs']}, "
        f"node {m['node']}, @tensorflow/tfjs {m['tfjs']}, tfjsfs {m['tfjsfs']} (git {m['git']})"
    )


# ------------------------------------------------------------------------ cells


def _f(x, spec=".2f", suffix=""):
    return "" if x is None else f"{x:{spec}}{suffix}"


def _mb_s(x):
    if x is None:
        return ""
    return f"{x:.0f}" if x >= 100 else (f"{x:.1f}" if x >= 10 else f"{x:.2f}")


def _bytes(n):
    if n is None:
        return ""
    if n >= 2**20:
        return f"{n / 2**20:.2f} MiB"
    if n >= 2**10:
        return f"{n / 2**10:.1f} KiB"
    return f"{n} B"


def _count(x):
    if x is None:
        return ""
    return f"{x:.0f}" if float(x).is_integer() else f"{x:.1f}"


def _status(r):
    if r["status"] == "ok":
        return "" if r.get("verified", True) else f"WRONG DATA: {r.get('verify_error')}"
    word = "not available" if r["status"] == "unavailable" else r["status"]
    return f"{word} ({r.get('error', '')})"


def scenario_table(sc):
    """(headers, rows) for one scenario."""
    rows = sc["rows"]
    if sc.get("table"):  # a scenario that lays out its own table (serve.py)
        return sc["table"]
    if sc["scenario"] == "one-tensor":
        headers = [
            "loader",
            "ms (median)",
            "x tfjsfs full load",
            "x limit full load",
            "shard bytes fetched",
            "x tensor bytes",
            "requests",
            "anchor",
            "note",
        ]
        out = []
        for r in rows:
            anchor = (r.get("anchor") or {}).get("text", "")
            got = (r.get("fetched") or {}) if r["status"] == "ok" else {}
            out.append(
                [
                    r["label"],
                    _f(r.get("seconds") and r["seconds"] * 1000, ".1f"),
                    _f(r.get("time_vs_full"), ".3f"),
                    _f(r.get("time_vs_limit_full"), ".3f"),
                    _bytes(got.get("bin_body_bytes")),
                    _f(r.get("x_tensor"), ".2f"),
                    _count(got.get("bin_requests")),
                    anchor,
                    _status(r),
                ]
            )
        return headers, out
    wan = sc["scenario"].startswith("wan")
    ref = "x link" if wan else ("x sequential" if sc["scenario"] in ("s3", "gcs") else "x limit")
    headers = [
        "loader",
        "MB/s (median)",
        ref,
        "peak extra / model",
        "anchor MB/s",
        "anchor peak",
        "this / anchor",
        "note",
    ]
    out = []
    for r in rows:
        a = r.get("anchor") or {}
        if r["loader"] in ("parse-json", "tfjsfs-parse"):
            out.append(
                [
                    r["label"],
                    _f(r.get("seconds") and r["seconds"] * 1000, ".1f", " ms"),
                    "",
                    "",
                    _f(a.get("seconds") and a["seconds"] * 1000, ".0f", " ms"),
                    "",
                    "",
                    _status(r),
                ]
            )
            continue
        x = r.get("x_link") if wan else r.get("x_ref")
        out.append(
            [
                r["label"],
                _mb_s(r.get("mb_s")),
                _f(x),
                _f(r.get("peak_ratio")),
                _mb_s(a.get("mb_s")),
                _f(a.get("peak_ratio")),
                _f(r.get("vs_anchor")),
                _status(r),
            ]
        )
    return headers, out


def _text_table(headers, rows):
    cols = list(zip(headers, *rows, strict=True)) if rows else [(h,) for h in headers]
    widths = [max(len(str(c)) for c in col) for col in cols]
    keep = [i for i, col in enumerate(cols) if any(str(c) for c in col[1:]) or i == 0]
    lines = ["  ".join(str(headers[i]).ljust(widths[i]) for i in keep)]
    lines.append("  ".join("-" * widths[i] for i in keep))
    for row in rows:
        lines.append("  ".join(str(row[i]).ljust(widths[i]) for i in keep).rstrip())
    return "\n".join(lines)


def _md_table(headers, rows):
    text = {"loader", "note", "anchor", "scenario", "model", "target", "verdict", "bound"}
    numeric = [i for i in range(len(headers)) if headers[i] not in text]
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---:" if i in numeric else "---" for i in range(len(headers))) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |")
    return "\n".join(lines)


def target_rows(results):
    rows = []
    for t in results.get("targets", []):
        verdict = {True: "met", False: "NOT met", None: "n/a"}[t["pass"]]
        value = t.get("value")
        if value is None:
            value = ""
        elif t["key"].endswith("_bytes"):
            value = f"{value:.0f}"
        else:
            value = f"{value:.3f}"
        rows.append(
            [
                t["scenario"],
                t.get("model", ""),
                t["what"],
                f"{t['op']} {t['bound']}",
                value,
                verdict,
                t.get("note", ""),
            ]
        )
    return ["scenario", "model", "target", "bound", "this run", "verdict", "note"], rows


def _title(sc):
    notes = [sc["note"]] if sc.get("note") else []
    load = sc.get("loadavg") or {}
    if load.get("start") is not None and load.get("end") is not None:
        notes.append(f"load avg {load['start']:.1f} to {load['end']:.1f}")
    return f"{sc['title']} [{sc['model']}]" + (f" ({'; '.join(notes)})" if notes else "")


def render_text(results):
    out = ["Machine: " + machine_line(results["machine"]), ""]
    for sc in results["scenarios"]:
        out.append(f"== {_title(sc)}")
        if sc.get("skipped"):
            out.append(f"   skipped: {sc['skipped']}")
        else:
            out.append(_text_table(*scenario_table(sc)))
        out.append("")
    out.append("== Targets")
    out.append(_text_table(*target_rows(results)))
    return "\n".join(out)


def render_markdown(results):
    out = [f"Machine: {machine_line(results['machine'])}", ""]
    for sc in results["scenarios"]:
        out.append(f"### {_title(sc)}")
        out.append("")
        if sc.get("skipped"):
            out.append(f"Skipped: {sc['skipped']}")
        else:
            out.append(_md_table(*scenario_table(sc)))
        out.append("")
    out.append("### Targets")
    out.append("")
    out.append(_md_table(*target_rows(results)))
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: report.py results.json")
    with open(sys.argv[1]) as f:
        print(render_markdown(json.load(f)))
