"""Finding Debian's Chromium, playwright-core and TF.js for the browser tests.

``TFJSFS_CHROMIUM`` points at another Chromium binary; ``TFJSFS_REQUIRE_BROWSER=1``
turns a missing browser into failures instead of skips.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
JS_DIR = REPO_ROOT / "tests" / "js"
TF_MIN_JS = REPO_ROOT / "node_modules" / "@tensorflow" / "tfjs" / "dist" / "tf.min.js"
PLAYWRIGHT = REPO_ROOT / "node_modules" / "playwright-core" / "package.json"


def chromium_path() -> str | None:
    """The Chromium binary: ``$TFJSFS_CHROMIUM``, else ``chromium`` on PATH."""
    return os.environ.get("TFJSFS_CHROMIUM") or shutil.which("chromium")


def missing_browser_reason() -> str | None:
    """Why the Chromium tests cannot run, or None."""
    if shutil.which("node") is None:
        return "no `node` binary on PATH"
    path = chromium_path()
    if not path or not os.access(path, os.X_OK):
        return "no Chromium: install Debian's `chromium` package or set TFJSFS_CHROMIUM"
    if not PLAYWRIGHT.is_file():
        return f"playwright-core is not installed; run `npm ci` in {REPO_ROOT}"
    if not TF_MIN_JS.is_file():
        return f"@tensorflow/tfjs is not installed; run `npm ci` in {REPO_ROOT}"
    return None


def browser_marks(what: str) -> list[pytest.MarkDecorator]:
    """``pytestmark`` of a Chromium test module: marked ``browser``, skipped
    loudly (naming *what*) when the browser is missing, unless
    ``TFJSFS_REQUIRE_BROWSER`` is set."""
    reason = missing_browser_reason()
    return [
        pytest.mark.browser,
        pytest.mark.skipif(
            reason is not None and not os.environ.get("TFJSFS_REQUIRE_BROWSER"),
            reason=f"SKIPPED, NO CHROMIUM {what}: {reason}",
        ),
    ]


def require_browser() -> str:
    """The Chromium path; fails the test when something is missing (a skip
    was not wanted)."""
    reason = missing_browser_reason()
    if reason is not None:
        pytest.fail(f"TFJSFS_REQUIRE_BROWSER is set but: {reason}")
    return chromium_path()
