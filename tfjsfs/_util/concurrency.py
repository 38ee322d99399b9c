"""Bounded concurrency that fails fast, and the one way sync twins run coroutines."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine, Iterable
from typing import Any, TypeVar

from fsspec.asyn import get_loop, sync

__all__ = ["gather_bounded", "run_sync"]

T = TypeVar("T")


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
