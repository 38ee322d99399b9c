"""Bounded concurrency that fails fast, and the one way sync twins run coroutines."""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, ParamSpec, TypeVar

from fsspec.asyn import get_loop, sync

from .options import storage_options_of

__all__ = ["gather_bounded", "run_sync", "sync_twin"]

T = TypeVar("T")
P = ParamSpec("P")


async def gather_bounded(aws: Iterable[Awaitable[T]], limit: int | None) -> list[T]:
    """Await *aws* with at most *limit* running at once, results in order.

    On the first failure the others are cancelled and that failure is raised
    as itself (not wrapped in an ``ExceptionGroup``). ``limit`` of None or
    below 1 means no bound.
    """
    aws = list(aws)
    gate = asyncio.Semaphore(limit) if limit and limit > 0 else None

    async def run(aw: Awaitable[T]) -> T:
        if gate is None:
            return await aw
        async with gate:
            return await aw

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(run(aw)) for aw in aws]
    except BaseExceptionGroup as grouped:
        first = grouped.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None
    return [t.result() for t in tasks]


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run *coro* on fsspec's IO loop and return its result: how every sync twin runs.

    The loop is fsspec's shared one, so sync calls reuse the inner filesystems'
    sessions; calling from inside a running event loop raises fsspec's
    ``NotImplementedError`` (use the ``_async`` twin there).
    """
    return sync(get_loop(), lambda: coro)


def sync_twin(
    coro_fn: Callable[P, Coroutine[Any, Any, T]],
    *,
    loose_storage_options: bool = False,
) -> Callable[[Callable[..., Any]], Callable[P, T]]:
    """Decorator: the sync twin of *coro_fn*, the one way sync twins are made.

    The decorated function gives the twin its name, numpydoc docstring and
    return annotation; its parameters are ignored. The twin takes exactly
    *coro_fn*'s parameters (``inspect.signature`` shows them) and runs
    *coro_fn* with :func:`run_sync`.

    With *loose_storage_options*, keywords *coro_fn* does not name are storage
    options passed the deprecated way: they are folded into
    ``storage_options`` here, in the caller's thread, so the
    ``DeprecationWarning`` points at the caller's line.

    Examples
    --------
    >>> @sync_twin(load_model_async)  # doctest: +SKIP
    ... def load_model() -> ModelArtifacts:
    ...     \"\"\"Load a TF.js bundle.\"\"\"
    """

    signature = inspect.signature(coro_fn)
    named = {
        p.name
        for p in signature.parameters.values()
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }

    def build(doc_fn: Callable[..., Any]) -> Callable[P, T]:
        @functools.wraps(doc_fn)
        def twin(*args: P.args, **kwargs: P.kwargs) -> T:
            if loose_storage_options:
                loose = {k: kwargs.pop(k) for k in list(kwargs) if k not in named}
                if loose:
                    kwargs["storage_options"] = storage_options_of(
                        kwargs.get("storage_options"), loose, doc_fn.__name__
                    )
            return run_sync(coro_fn(*args, **kwargs))

        del twin.__wrapped__  # the signature is the coroutine's, not doc_fn's
        returns = inspect.signature(doc_fn).return_annotation
        twin.__signature__ = signature.replace(return_annotation=returns)
        twin.__annotations__ = {
            **{k: v for k, v in coro_fn.__annotations__.items() if k != "return"},
            "return": returns,
        }
        return twin

    return build
