"""Retries with exponential backoff for transient transfer failures.

Transient: HTTP 5xx, 408 and 429, connection resets and refusals, timeouts,
bodies that end early (:class:`Truncated`), and replies whose byte counts
disagree with what was planned (a :class:`~tfjsfs.errors.SizeMismatch`
marked ``retryable``), whatever the size of the shard. Everything else (404,
403, bad data) fails at once. Every retry is logged on the ``tfjsfs``
logger (level INFO) with the request, the attempt and the reason. When the
attempts run out, the last failure is raised as
:class:`~tfjsfs.errors.TransferError` (a size disagreement stays a
:class:`~tfjsfs.errors.SizeMismatch`), keeping its message (which names the
shard, the weights and the byte counts) and the attempt count.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import random
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from ..errors import TransferError, Transient, Truncated

__all__ = [
    "DEFAULT_FOLLOW_REDIRECTS",
    "DEFAULT_MAX_JSON_BYTES",
    "FOLLOW_REDIRECTS",
    "RetryPolicy",
    "Transient",
    "Truncated",
    "is_transient",
    "with_retries",
]

logger = logging.getLogger("tfjsfs")

#: Largest model.json a load reads unless told otherwise (``max_json_bytes``).
DEFAULT_MAX_JSON_BYTES = 64 << 20
#: Which redirects a load follows unless told otherwise (``follow_redirects``).
DEFAULT_FOLLOW_REDIRECTS = "same-origin"
FOLLOW_REDIRECTS = ("never", "same-origin", "any")

T = TypeVar("T")

_TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_TRANSIENT_ERRNO = frozenset(
    {errno.ECONNRESET, errno.ECONNABORTED, errno.ECONNREFUSED, errno.EPIPE, errno.ETIMEDOUT}
)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try one request, and what a reply may make it do.

    Parameters
    ----------
    retries : int
        Extra attempts after the first.
    backoff : float
        First delay in seconds; each further delay doubles (with jitter) up
        to ``max_backoff``.
    max_backoff : float
        Longest delay between attempts.
    timeout : float or None
        Per-request limit in seconds. Over HTTP it is the longest wait for
        the next bytes (connect or read), so large shards on slow links are
        fine; for other backends, whose transfers cannot be watched, it
        bounds the whole request and grows by ``timeout`` per 64 MiB asked.
        None for no limit.
    follow_redirects : {"same-origin", "never", "any"}
        Which HTTP redirects a shard request follows: to the same scheme,
        host and port only (default), none, or any.
    max_json_bytes : int
        Largest model.json read (64 MiB by default); a larger one is a
        :class:`~tfjsfs.errors.ManifestError` after reading one byte more.
    """

    retries: int = 5
    backoff: float = 0.2
    max_backoff: float = 5.0
    timeout: float | None = 60.0
    follow_redirects: str = DEFAULT_FOLLOW_REDIRECTS
    max_json_bytes: int = DEFAULT_MAX_JSON_BYTES

    def __post_init__(self) -> None:
        if self.follow_redirects not in FOLLOW_REDIRECTS:
            raise ValueError(
                f"follow_redirects must be one of {FOLLOW_REDIRECTS}, "
                f"got {self.follow_redirects!r}"
            )
        if isinstance(self.max_json_bytes, bool) or not (
            isinstance(self.max_json_bytes, int) and self.max_json_bytes > 0
        ):
            raise ValueError(
                f"max_json_bytes must be a positive integer, got {self.max_json_bytes!r}"
            )

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number *attempt* (0-based)."""
        base = min(self.max_backoff, self.backoff * (2**attempt))
        return base * (0.5 + random.random() / 2)

    def total_timeout(self, nbytes: int) -> float | None:
        """Whole-request limit for a transfer of *nbytes* that cannot be watched."""
        if self.timeout is None:
            return None
        return self.timeout * (1 + nbytes // (64 << 20))


def is_transient(exc: BaseException) -> bool:
    """Whether *exc* is worth another attempt."""
    if isinstance(exc, Transient) or getattr(exc, "retryable", False):
        return True
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)):
        return False
    if isinstance(exc, TransferError):
        return False
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError, ConnectionError)):
        return True
    aiohttp = sys.modules.get("aiohttp")  # an aiohttp error implies aiohttp is loaded
    if aiohttp is not None:
        if isinstance(exc, aiohttp.ClientResponseError):
            return exc.status in _TRANSIENT_STATUS
        if isinstance(exc, (aiohttp.ClientSSLError, aiohttp.InvalidURL)):
            return False
        if isinstance(exc, (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError)):
            return True
    if isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNO:
        return True
    status = getattr(exc, "status", None) or getattr(exc, "code", None)
    return isinstance(status, int) and status in _TRANSIENT_STATUS


async def with_retries(
    attempt: Callable[[int], Awaitable[T]],
    policy: RetryPolicy,
    what: str | Callable[[], str],
    *,
    timeout: float | None = None,
) -> T:
    """Run ``attempt(n)`` until it succeeds, retrying transient failures.

    Parameters
    ----------
    attempt : callable
        Called with the attempt number (0 first); returns an awaitable.
    policy : RetryPolicy
    what : str or callable
        The request, for messages (e.g. the shard URL); a callable is only
        called when a message is needed.
    timeout : float, optional
        Whole-attempt limit in seconds (None: the attempt watches its own).

    Raises
    ------
    TransferError
        After the last attempt of a transient failure.
    SizeMismatch
        After the last attempt, when the reply disagreed on the byte count.
    """
    for n in range(policy.retries + 1):
        try:
            if timeout is None:
                return await attempt(n)
            async with asyncio.timeout(timeout):
                return await attempt(n)
        except Exception as exc:
            if not is_transient(exc):
                raise
            if callable(what):
                what = what()
            detail = str(exc) or type(exc).__name__
            if what not in detail:
                detail = f"{what}: {detail}"
            if n == policy.retries:
                gave_up = f"{detail} (gave up after {n + 1} attempt{'s' if n else ''})"
                if not isinstance(exc, TransferError):  # a size disagreement keeps its type
                    exc.args = (gave_up, *exc.args[1:])
                    raise
                raise TransferError(gave_up) from exc
            delay = policy.delay(n)
            logger.info(
                "retrying %s (attempt %d of %d, in %.2f s) after %s",
                what,
                n + 2,
                policy.retries + 1,
                delay,
                detail,
            )
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover
