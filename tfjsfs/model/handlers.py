"""IOHandlers and the routers that pick one for a URL (TF.js's ``registerLoadRouter``).

``register_io_router`` (alias ``register_handler``) adds a router; built-in routers
are listed in :data:`BUILTIN_ROUTERS` (importing tfjsfs registers nothing).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

from ..errors import HandlerNotFoundError
from ..format.artifacts import ModelArtifacts, SaveResult
from .http import http_save_router

__all__ = [
    "BUILTIN_ROUTERS",
    "IOHandler",
    "get_load_handlers",
    "get_save_handlers",
    "pick_handler",
    "register_handler",
    "register_io_router",
]


@runtime_checkable
class IOHandler(Protocol):
    """TF.js ``IOHandler``: an object with ``load()`` and/or ``save(artifacts)``.

    Either method may be a plain function or a coroutine function.
    """

    def load(self) -> ModelArtifacts:
        """Return the model's artifacts (TF.js ``LoadHandler``)."""

    def save(self, artifacts: ModelArtifacts) -> SaveResult:
        """Store *artifacts* and describe what was stored (TF.js ``SaveHandler``)."""


Router = Callable[..., Any]
#: built-in routers (router, load, save), asked first; listed, not registered on import
BUILTIN_ROUTERS: tuple[tuple[Router, bool, bool], ...] = ((http_save_router, False, True),)
_routers: list[tuple[Router, bool, bool]] = []


def register_io_router(router: Router, *, load: bool = True, save: bool = True) -> Router:
    """Register a router: ``router(url, **options)`` returns an IOHandler or None.

    Routers are asked after the built-in ones (HTTP saves), in registration
    order, before the fsspec handler; more than one match is an error, as in TF.js. Usable as a
    decorator.
    """
    _routers.append((router, load, save))
    return router


def _handlers(url: Any, kind: str, options: Mapping[str, Any]) -> list[Any]:
    out = []
    for router, load, save in (*BUILTIN_ROUTERS, *_routers):
        if (kind == "load" and load) or (kind == "save" and save):
            handler = router(url, **options)
            if handler is not None:
                out.append(handler)
    return out


def get_load_handlers(url: Any, **options: Any) -> list[Any]:
    """Handlers of registered routers that can load *url* (TF.js ``getLoadHandlers``)."""
    return _handlers(url, "load", options)


def get_save_handlers(url: Any, **options: Any) -> list[Any]:
    """Handlers of registered routers that can save to *url* (TF.js ``getSaveHandlers``)."""
    return _handlers(url, "save", options)


def pick_handler(url: Any, kind: str, options: Mapping[str, Any]) -> Any | None:
    """*url* itself when it is a handler, else the one router's handler, else None.

    Raises
    ------
    HandlerNotFoundError
        When more than one router claims *url*.
    """
    if hasattr(url, kind) and not isinstance(url, (str, bytes)):
        return url
    found = _handlers(url, kind, options)
    if len(found) > 1:
        raise HandlerNotFoundError(
            f"found more than one ({len(found)}) {kind} handlers for URL {url!r}"
        )
    return found[0] if found else None


#: the former name of :func:`register_io_router`
register_handler = register_io_router
