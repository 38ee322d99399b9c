"""Where upload spool files are named and, after a crash, swept.

An upload's weights that outgrow memory go to a temporary file named
``tfjsfs-upload-<pid>-<random>.bin`` (in ``--spool-dir`` or the system's temp
folder). A running server deletes its own spool files; a killed one leaves
them. :func:`sweep_spools` removes those whose process is gone, once they are
older than the grace period (the server calls it at start).

:func:`place_spool` puts a spool's bytes into a local store as a weight file
without a second pass over them: a hard link when the spool folder is on the
store's file system, else a copy the kernel makes.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time

__all__ = ["SPOOL_PREFIX", "SPOOL_SUFFIX", "place_spool", "spool_prefix", "sweep_spools"]

SPOOL_PREFIX = "tfjsfs-upload-"
SPOOL_SUFFIX = ".bin"
_SPOOL = re.compile(rf"^{re.escape(SPOOL_PREFIX)}(\d+)-.*{re.escape(SPOOL_SUFFIX)}$")


def spool_prefix() -> str:
    """The name prefix of this process's spool files (carries its pid)."""
    return f"{SPOOL_PREFIX}{os.getpid()}-"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_spools(
    directory: str | None, grace_period: float, now: float | None = None
) -> list[str]:
    """Remove spool files of processes that are gone, older than *grace_period* s.

    Parameters
    ----------
    directory : str or None
        The spool folder (None: the system's temp folder).
    grace_period : float
    now : float, optional
        The current time (``time.time()``).

    Returns
    -------
    list of str
        The paths removed.
    """
    directory = directory or tempfile.gettempdir()
    now = time.time() if now is None else now
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        match = _SPOOL.match(name)
        if match is None or _alive(int(match.group(1))):
            continue
        path = os.path.join(directory, name)
        with contextlib.suppress(OSError):
            if now - os.stat(path).st_mtime >= grace_period:
                os.unlink(path)
                removed.append(path)
    return removed


def _file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file (0o666 less the umask)."""
    with contextlib.suppress(OSError, ValueError, StopIteration), open("/proc/self/status") as f:
        line = next(x for x in f if x.startswith("Umask:"))
        return 0o666 & ~int(line.split()[1], 8)
    return 0o644


def place_spool(spool: str, path: str, exclusive: bool = False) -> str:
    """Give the local file *path* the bytes of the spool file *spool*, which stays.

    A hard link when both are on one file system (no byte is copied), else a
    copy made by the kernel (``shutil.copyfile``: ``copy_file_range``/``sendfile``).
    *path* gets the mode a newly written file gets (spools are private, 0600).
    With *exclusive*, *path* must not exist (``FileExistsError``, nothing written):
    the link, or an ``O_EXCL`` creation before the copy, claims it atomically.

    Returns
    -------
    str
        ``"link"`` or ``"copy"``.
    """
    try:
        os.link(spool, path)
        how = "link"
    except OSError as exc:  # another file system, links not supported, or path exists
        if exclusive:
            if isinstance(exc, FileExistsError):
                raise
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        shutil.copyfile(spool, path)
        how = "copy"
    os.chmod(path, _file_mode())
    return how
