"""``tfjs+<protocol>`` names: the per-name classes and :func:`register`.

Entry points cover the common backends (``tfjs+file``, ``tfjs+local``,
``tfjs+memory``, ``tfjs+http(s)``, ``tfjs+s3``, ``tfjs+s3a``, ``tfjs+gs``,
``tfjs+gcs``); :func:`register` adds ``tfjs+X`` for any other fsspec protocol
at run time, and ``tfjs::<any fsspec URL>`` needs no registration at all.

Every ``tfjs+X`` name points at ``tfjsfs.fs.core.TFJSFileSystem_X``, a subclass
of :class:`~tfjsfs.fs.core.TFJSFileSystem` whose only difference is its default
inner protocol; ``tfjsfs.fs.core`` makes it on first access (module
``__getattr__``), so the name also resolves in a fresh process (pickles, Dask
workers, ``fsspec.filesystem("tfjs+X")`` with no URL). Names are registered
as *strings*: a class object registered at run time would be invisible to
``::`` chaining (fsspec-design P3).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import fsspec
from fsspec.registry import known_implementations

__all__ = ["ALIAS_PREFIX", "alias_name", "alias_protocol", "register", "register_protocols"]

ALIAS_PREFIX = "TFJSFileSystem_"


def alias_name(protocol: str) -> str:
    """The ``tfjsfs.fs.core`` attribute naming the ``tfjs+<protocol>`` class.

    Characters other than ASCII letters and digits are written ``_hh_`` (hex).
    """
    return ALIAS_PREFIX + "".join(
        c if c.isascii() and c.isalnum() else f"_{ord(c):02x}_" for c in protocol
    )


def alias_protocol(name: str) -> str | None:
    """Inverse of :func:`alias_name` (None for any other name)."""
    if not name.startswith(ALIAS_PREFIX) or len(name) == len(ALIAS_PREFIX):
        return None
    encoded = name[len(ALIAS_PREFIX) :]
    protocol = re.sub(r"_([0-9a-f]{2})_", lambda m: chr(int(m.group(1), 16)), encoded)
    return protocol if alias_name(protocol) == name else None


def _upath_register(names: Iterable[str]) -> None:
    try:
        from upath.registry import register_implementation
    except ImportError:  # universal-pathlib is optional
        return
    for name in names:
        register_implementation(name, "tfjsfs.fs.upath.TFJSPath", clobber=True)


def register(protocols: Iterable[str] | None = None, *, clobber: bool = False) -> list[str]:
    """Register ``tfjs+<protocol>`` for other fsspec protocols.

    Parameters
    ----------
    protocols : iterable of str, optional
        Inner protocols to cover; default every protocol fsspec knows (its
        classes are not imported).
    clobber : bool
        Replace names that are already registered (entry points included).

    Returns
    -------
    list of str
        The ``tfjs+…`` names registered by this call (also with
        universal-pathlib, when it is installed).

    Examples
    --------
    >>> import tfjsfs
    >>> tfjsfs.register(["sftp"])  # doctest: +SKIP
    ['tfjs+sftp']
    """
    wanted = list(protocols) if protocols is not None else list(fsspec.available_protocols())
    done = []
    for protocol in wanted:
        if not protocol or protocol == "tfjs" or protocol.startswith("tfjs+"):
            continue
        name = f"tfjs+{protocol}"
        if name in known_implementations and not clobber:
            continue
        target = f"tfjsfs.fs.core.{alias_name(protocol)}"
        fsspec.register_implementation(name, target, clobber=True)
        done.append(name)
    _upath_register(done)
    return done


#: the name that says which registry it touches (fsspec's protocols)
register_protocols = register
