"""Option values written as text: ``KEY=VALUE`` storage options and byte sizes.

Shared by the command line and the model server's own options.
"""

from __future__ import annotations

import argparse
import json
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import CLIError

__all__ = ["parse_options", "parse_size", "storage_options_of"]


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_options(pairs: Sequence[str] | None) -> dict[str, Any]:
    """``["a=1", "b.c=x"]`` → ``{"a": 1, "b": {"c": "x"}}``."""
    out: dict[str, Any] = {}
    for pair in pairs or ():
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise CLIError(f"storage option {pair!r} is not KEY=VALUE")
        *parents, leaf = key.split(".")
        target = out
        for part in parents:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise CLIError(f"storage option {key!r} conflicts with another option")
        target[leaf] = _value(raw)
    return out


_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
}


def parse_size(text: str) -> int:
    """``"4MiB"`` → 4194304; ``"512k"`` → 512000; ``"100"`` → 100."""
    raw = text.strip().lower().replace(" ", "")
    number = raw.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = raw[len(number) :]
    try:
        value = float(number) * _SIZE_UNITS[unit]
    except (KeyError, ValueError):
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 4MiB, 512k, 100)") from None
    if value <= 0 or value != int(value):
        raise argparse.ArgumentTypeError(
            f"size must be a positive whole number of bytes: {text!r}"
        )
    return int(value)


def storage_options_of(
    storage_options: Mapping[str, Any] | None, loose: Mapping[str, Any], where: str
) -> dict[str, Any]:
    """*storage_options* plus options still passed as loose keywords (deprecated).

    Loose keywords (``list_models(prefix, anon=True)``) are accepted for one
    release with a ``DeprecationWarning`` naming *where*; ``storage_options=``
    is the one way to pass them.
    """
    if loose:
        names = ", ".join(sorted(loose))
        warnings.warn(
            f"{where}: passing storage options as keywords ({names}) is deprecated; "
            f"use storage_options={{...}}",
            DeprecationWarning,
            stacklevel=3,
        )
    return {**dict(storage_options or {}), **dict(loose)}
