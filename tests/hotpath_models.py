"""Models and a header-recording HTTP server for the hot-path tests."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from peers.http import StaticServer

import tfjsfs
from tfjsfs import ModelArtifacts

TOPOLOGY = {"class_name": "Sequential", "config": {"name": "m", "layers": []}}


def numeric_weights(seed: int = 0) -> dict[str, np.ndarray]:
    """Numeric tensors of several dtypes and sizes (no strings: offsets are known)."""
    rng = np.random.default_rng(seed)
    return {
        "embed": rng.normal(size=(300, 40)).astype(np.float32),  # 48,000 bytes
        "dense/kernel": rng.normal(size=(40, 30)).astype(np.float32),
        "dense/bias": rng.normal(size=30).astype(np.float32),
        "flags": rng.random(7) > 0.5,
        "counts": np.arange(-50, 50, dtype=np.int32).reshape(10, 10),
        "phase": (rng.normal(size=6) + 1j * rng.normal(size=6)).astype(np.complex64),
        "quant8": rng.normal(size=(120, 16)).astype(np.float32),
        "quant16": rng.normal(size=(64, 3)).astype(np.float32),
        "half": rng.normal(size=(50, 5)).astype(np.float32),
        "scalar": np.float32(1.5),
        "tail": rng.normal(size=(20, 20)).astype(np.float32),
    }


QUANTIZE = {"uint8": "quant8", "uint16": "quant16", "float16": "half"}


def save(root: Path, name: str = "m", weights=None, shard_size: int = 4096, quantize=QUANTIZE):
    """Save a bundle under ``root/name`` and return its expected weights (as loaded locally)."""
    weights = numeric_weights() if weights is None else weights
    art = ModelArtifacts.from_weights(TOPOLOGY, weights, quantize=quantize)
    tfjsfs.save_model(art, root / name, shard_size=shard_size)
    return tfjsfs.load_weights(root / name)


def assert_same(got: dict, expected: dict) -> None:
    assert list(got) == list(expected)
    for key, value in expected.items():
        assert got[key].dtype == value.dtype, key
        assert got[key].shape == value.shape, key
        assert np.array_equal(got[key], value), key


@dataclass(frozen=True)
class Seen:
    """A request as the recording server saw it."""

    method: str
    path: str
    query: str
    headers: dict[str, str]


class RecordingServer(StaticServer):
    """The static test server, also keeping every request's query string and headers."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._seen_lock = threading.Lock()
        self._seen: list[Seen] = []

    async def _handle(self, request):
        with self._seen_lock:
            self._seen.append(
                Seen(
                    request.method,
                    request.path,
                    request.raw_path.partition("?")[2],  # as sent, not decoded
                    dict(request.headers),
                )
            )
        return await super()._handle(request)

    @property
    def seen(self) -> list[Seen]:
        with self._seen_lock:
            return list(self._seen)

    def forget(self) -> None:
        with self._seen_lock:
            self._seen.clear()
        self.reset_stats()


def shard_bytes(server: StaticServer) -> int:
    """Body bytes the server sent for ``.bin`` files."""
    return sum(n for path, n in server.stats.bytes_served.items() if path.endswith(".bin"))


class StallingServer(StaticServer):
    """The static test server, able to stall before answering a path."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._stalls: dict[str, list[float]] = {}
        self.arrivals: dict[str, int] = {}

    def stall(self, path: str, seconds: float, times: int = 1) -> None:
        """Wait *seconds* before answering the next *times* requests to *path*."""
        self._stalls.setdefault(path, []).extend([seconds] * times)

    async def _handle(self, request):
        import asyncio

        self.arrivals[request.path] = self.arrivals.get(request.path, 0) + 1
        pending = self._stalls.get(request.path)
        if pending:
            await asyncio.sleep(pending.pop(0))
        return await super()._handle(request)
