"""Bounded concurrency that fails fast with the original exception."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import TypeVar

__all__ = ["gather_bounded"]

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
