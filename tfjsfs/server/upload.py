"""Receiving TF.js's multipart upload: parse, spool and validate it completely.

``model.save('http://host/path')`` posts ``multipart/form-data`` with a
``model.json`` part and a ``model.weights.bin`` part (see :mod:`tfjsfs.model.http`).
:func:`read_upload` reads such a body from an aiohttp stream. The JSON part is
kept in memory (it is bounded) and parsed in a worker thread while the
weights part is still arriving; the weights part is streamed into a
:class:`Spool` (memory for small uploads, a temporary file for large ones)
and exposed as a zero-copy view (a memory map), so it is never held twice.
A spool file becomes the stored weight file of a local store by a hard link
(:func:`~tfjsfs.server.spools.place_spool`): the bytes are written once.
Part content types are not enforced (clients differ); field names are.

Nothing is accepted before everything is checked: the field names, the model
JSON, the manifest's paths and every weight's byte count against the bytes
received. Problems raise :class:`~tfjsfs.errors.UploadError` (or
:class:`~tfjsfs.errors.UploadTooLargeError`) naming the part, the weight and the counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import mmap
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import hdrs
from aiohttp.base_protocol import BaseProtocol
from multidict import CIMultiDict

from ..errors import UploadEncodingError, UploadError, UploadTooLargeError, WeightDataError
from ..format.artifacts import ModelArtifacts
from ..format.codec import weight_extents
from ..format.manifest import ModelJSON
from ..io.bundle import gc_paused
from ..io.location import name_in_folder
from ..model.http import JSON_FIELD, WEIGHTS_FIELD
from .spools import SPOOL_SUFFIX, spool_prefix

__all__ = [
    "DEFAULT_MAX_JSON_BYTES",
    "DEFAULT_SPOOL_MEMORY",
    "PartInfo",
    "Spool",
    "Upload",
    "UploadTooLargeError",
    "expected_weight_bytes",
    "read_upload",
    "read_upload_bytes",
]

#: Largest model.json part accepted (it is parsed in memory).
DEFAULT_MAX_JSON_BYTES = 64 * 1024 * 1024
#: Weights up to this size stay in memory; larger ones go to a temporary file.
DEFAULT_SPOOL_MEMORY = 8 * 1024 * 1024
#: Body bytes read per step (what an upload holds at once besides its spool).
CHUNK = 1024 * 1024
_IDENTITY = {"", "identity", "binary", "7bit", "8bit"}


class Spool:
    """A growing byte buffer: memory up to *memory_limit*, then a temporary file.

    Parameters
    ----------
    memory_limit : int
        Bytes kept in memory before switching to a file.
    directory : str, optional
        Where the temporary file goes (default: the system's temp folder).
    """

    def __init__(self, memory_limit: int = DEFAULT_SPOOL_MEMORY, directory: str | None = None):
        self.memory_limit = memory_limit
        self.directory = directory
        self.size = 0
        self._memory: bytearray | None = bytearray()
        self._file: Any = None
        self._map: mmap.mmap | None = None
        self._view: memoryview | None = None

    @property
    def path(self) -> str | None:
        """The temporary file's path, or None while the bytes are in memory."""
        return self._file.name if self._file is not None else None

    def write(self, chunk: bytes) -> None:
        """Append *chunk*."""
        if self._view is not None:
            raise RuntimeError("spool is already being read")
        if self._file is None and self.size + len(chunk) > self.memory_limit:
            self._file = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed in close())
                prefix=spool_prefix(), suffix=SPOOL_SUFFIX, dir=self.directory
            )
            self._file.write(self._memory)
            self._memory = None
        if self._file is not None:
            self._file.write(chunk)
        else:
            self._memory += chunk
        self.size += len(chunk)

    def view(self) -> memoryview:
        """All bytes written, without copying (a memory map for file spools)."""
        if self._view is None:
            if self._file is None:
                self._view = memoryview(self._memory)
            elif self.size == 0:
                self._view = memoryview(b"")
            else:
                self._file.flush()
                self._map = mmap.mmap(self._file.fileno(), self.size, access=mmap.ACCESS_READ)
                self._view = memoryview(self._map)
        return self._view

    def close(self) -> None:
        """Drop the bytes and delete the temporary file."""
        if self._view is not None:
            with contextlib.suppress(BufferError):
                self._view.release()
        if self._map is not None:
            with contextlib.suppress(BufferError):  # views still alive: GC unmaps
                self._map.close()
        if self._file is not None:
            self._file.close()
        self._memory = None
        self._file = self._map = self._view = None

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class PartInfo:
    """How a part arrived: field name, file name, content type and body bytes."""

    name: str
    filename: str | None
    content_type: str | None
    nbytes: int


@dataclass
class Upload:
    """A validated TF.js upload.

    Attributes
    ----------
    artifacts : ModelArtifacts
        ``weight_data`` is a zero-copy view of :attr:`spool`.
    model_json : ModelJSON
    json_part, weights_part : PartInfo
        ``weights_part`` is None when the upload had no weights part.
    spool : Spool
        Holds the weight bytes until :meth:`close`.
    """

    artifacts: ModelArtifacts
    model_json: ModelJSON
    json_part: PartInfo
    weights_part: PartInfo | None
    spool: Spool

    @property
    def weight_bytes(self) -> int:
        """Bytes in the weights part."""
        return self.spool.size

    def close(self) -> None:
        """Release the spooled weights."""
        self.spool.close()

    def __enter__(self) -> Upload:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _part_label(name: str) -> str:
    return f"upload part {name!r}"


def _check_body_encoding(headers: Mapping[str, str]) -> None:
    """Refuse a body with a ``Content-Encoding``: it would be decoded before
    any limit applies (a small gzip body can inflate to gigabytes)."""
    value = headers.get(hdrs.CONTENT_ENCODING, "").strip().lower()
    if value and value != "identity":
        raise UploadEncodingError(
            f"upload body uses Content-Encoding: {value}; this server takes uploads only "
            "as they are (TF.js sends them unencoded), so nothing grows past its size limit"
        )


def _check_encoding(part: aiohttp.BodyPartReader, name: str) -> None:
    for header in (hdrs.CONTENT_TRANSFER_ENCODING, hdrs.CONTENT_ENCODING):
        value = part.headers.get(header, "").strip().lower()
        if value not in _IDENTITY:
            raise UploadError(
                f"{_part_label(name)} uses {header}: {value}; TF.js sends the bytes as they are"
            )


class _Budget:
    """Counts body bytes against the upload limit."""

    def __init__(self, limit: int | None):
        self.limit = limit
        self.used = 0

    def take(self, n: int) -> None:
        self.used += n
        if self.limit is not None and self.used > self.limit:
            raise UploadTooLargeError(
                f"upload is larger than the limit of {self.limit} bytes "
                f"(received {self.used} so far)",
                self.limit,
                self.used,
            )


async def _read_json_part(
    part: aiohttp.BodyPartReader, budget: _Budget, max_json_bytes: int
) -> bytes:
    data = bytearray()
    while chunk := await part.read_chunk(CHUNK):
        budget.take(len(chunk))
        data += chunk
        if len(data) > max_json_bytes:
            raise UploadTooLargeError(
                f"{_part_label(JSON_FIELD)} is larger than {max_json_bytes} bytes",
                max_json_bytes,
                len(data),
            )
    return bytes(data)


async def _read_weights_part(part: aiohttp.BodyPartReader, budget: _Budget, spool: Spool) -> None:
    while chunk := await part.read_chunk(CHUNK):
        budget.take(len(chunk))
        spool.write(chunk)


def _info(part: aiohttp.BodyPartReader, name: str, nbytes: int) -> PartInfo:
    return PartInfo(name, part.filename, part.headers.get(hdrs.CONTENT_TYPE), nbytes)


def _manifest_uses_weights_part(doc: ModelJSON) -> bool:
    """Check the manifest's paths: at most one, and it must be ``model.weights.bin``."""
    found = []
    for g, group in enumerate(doc.weights_manifest):
        for path in group.paths:
            if name_in_folder(path) != WEIGHTS_FIELD:
                raise UploadError(
                    f"{_part_label(JSON_FIELD)}: weightsManifest[{g}] names weight file "
                    f"{path!r}, but an upload carries all weights in one part "
                    f"{WEIGHTS_FIELD!r} (TF.js writes paths ['./{WEIGHTS_FIELD}'])"
                )
            found.append(g)
    if len(found) > 1:
        raise UploadError(
            f"{_part_label(JSON_FIELD)}: {WEIGHTS_FIELD!r} is listed {len(found)} times "
            "in weightsManifest; it may appear once"
        )
    return bool(found)


def check_weight_bytes(doc: ModelJSON, view: memoryview) -> None:
    """Check that *view* holds exactly the bytes the manifest's weights need.

    Raises
    ------
    WeightDataError
        Naming the first weight that runs past the end, or the trailing bytes.
    """
    if expected_weight_bytes(doc) == len(view):  # no strings, sizes add up: nothing to walk
        return
    specs = doc.weight_specs
    label = _part_label(WEIGHTS_FIELD)
    total = len(view)
    offset = count = 0
    walk = weight_extents(specs, view)
    while True:
        try:
            item = next(walk, None)
        except WeightDataError as exc:  # a string's length prefixes run past the end
            spec = specs[count]
            raise WeightDataError(
                f"{label} holds {total} bytes but string weight {spec.name!r} "
                f"({list(spec.shape)}, from byte {offset}) runs past its end: "
                f"{str(exc).removeprefix(f'weight {spec.name!r}: ')}"
            ) from None
        if item is None:
            break
        spec, start, end = item
        if end > total:
            need = expected_weight_bytes(doc)
            need_text = f"the manifest's {len(specs)} weights need {need} bytes, " if need else ""
            raise WeightDataError(
                f"{label} holds {total} bytes but {need_text}weight {spec.name!r} "
                f"({spec.dtype} {list(spec.shape)}) needs bytes {start}..{end} "
                f"(short by {end - total})"
            )
        offset, count = end, count + 1
    if offset != total:
        last = f" after the last weight {specs[-1].name!r}" if specs else ""
        raise WeightDataError(
            f"{label} holds {total} bytes but the manifest's {len(specs)} weights need "
            f"{offset}: {total - offset} unexpected trailing bytes{last}"
        )


def expected_weight_bytes(doc: ModelJSON) -> int | None:
    """Bytes the manifest's weights need, or None when string tensors make it
    depend on the data."""
    total = 0
    for group in doc.weights_manifest:
        nbytes = group.expected_bytes
        if nbytes is None:
            return None
        total += nbytes
    return total


async def read_upload(
    headers: Mapping[str, str],
    content: aiohttp.StreamReader,
    *,
    max_bytes: int | None = None,
    max_json_bytes: int = DEFAULT_MAX_JSON_BYTES,
    spool_memory: int = DEFAULT_SPOOL_MEMORY,
    spool_dir: str | None = None,
) -> Upload:
    """Read and validate a TF.js multipart upload.

    Parameters
    ----------
    headers : mapping
        The request headers (``Content-Type`` with the boundary is needed).
    content : aiohttp.StreamReader
        The request body, e.g. ``request.content``.
    max_bytes : int, optional
        Largest body accepted; checked against ``Content-Length`` first, then
        while reading.
    max_json_bytes : int
        Largest model.json part.
    spool_memory : int
        Weight bytes kept in memory before spooling to a temporary file.
    spool_dir : str, optional
        Folder for that temporary file.

    Returns
    -------
    Upload
        Close it (or use it as a context manager) to free the spool.

    Raises
    ------
    UploadEncodingError
        The body has a ``Content-Encoding`` (checked before any byte is read).
    UploadError
        Not ``multipart/form-data``, a malformed body, an unexpected or
        repeated field, a missing part, bad model JSON, manifest paths other
        than ``./model.weights.bin``.
    UploadTooLargeError
        Over *max_bytes* or *max_json_bytes*.
    tfjsfs.errors.WeightDataError
        The weights part disagrees with the manifest's byte counts.
    tfjsfs.errors.ManifestError
        model.json is not a valid TF.js model JSON.
    """
    headers = CIMultiDict(headers)
    _check_body_encoding(headers)
    ctype = headers.get(hdrs.CONTENT_TYPE, "")
    if not ctype.lower().startswith("multipart/form-data"):
        raise UploadError(
            f"expected a multipart/form-data body (TF.js's model.save), "
            f"got Content-Type {ctype or 'none'!r}"
        )
    announced = headers.get(hdrs.CONTENT_LENGTH)
    if max_bytes is not None and announced and announced.isdigit():
        size = int(announced)
        if size > max_bytes:
            raise UploadTooLargeError(
                f"upload of {size} bytes is larger than the limit of {max_bytes} bytes",
                max_bytes,
                size,
            )
    budget = _Budget(max_bytes)
    spool = Spool(spool_memory, spool_dir)
    try:
        return await _read_parts(headers, content, budget, spool, max_json_bytes)
    except BaseException:
        spool.close()
        raise


async def _read_parts(headers, content, budget, spool, max_json_bytes) -> Upload:
    try:
        reader = aiohttp.MultipartReader(headers, content)
    except (ValueError, AssertionError) as exc:
        raise UploadError(f"malformed multipart/form-data header: {exc}") from None
    json_bytes: bytes | None = None
    json_info = weights_info = None
    parsing: asyncio.Future | None = None  # model.json, parsed while the weights arrive
    try:
        while (part := await reader.next()) is not None:
            if not isinstance(part, aiohttp.BodyPartReader):
                raise UploadError("nested multipart parts are not part of a TF.js upload")
            name = part.name
            if name not in (JSON_FIELD, WEIGHTS_FIELD):
                raise UploadError(
                    f"unexpected form field {name!r} (file name {part.filename!r}); a TF.js "
                    f"upload has the fields {JSON_FIELD!r} and {WEIGHTS_FIELD!r}"
                )
            if (json_info if name == JSON_FIELD else weights_info) is not None:
                raise UploadError(f"form field {name!r} appears more than once")
            _check_encoding(part, name)
            if name == JSON_FIELD:
                json_bytes = await _read_json_part(part, budget, max_json_bytes)
                json_info = _info(part, name, len(json_bytes))
                # Parsing is CPU work on untrusted input: never on the event loop.
                parsing = asyncio.ensure_future(asyncio.to_thread(_parse_json, json_bytes))
            else:
                await _read_weights_part(part, budget, spool)
                weights_info = _info(part, name, spool.size)
    except BaseException as exc:
        if parsing is not None:  # its outcome no longer matters (the thread ends by itself)
            parsing.add_done_callback(lambda f: f.cancelled() or f.exception())
        if isinstance(exc, (UploadError, asyncio.CancelledError)):
            raise
        if isinstance(exc, (ValueError, RuntimeError, aiohttp.ClientPayloadError)):
            raise UploadError(f"malformed multipart/form-data body: {exc}") from None
        raise
    if parsing is None:
        got = [i.name for i in (weights_info,) if i is not None]
        raise UploadError(
            f"missing part {JSON_FIELD!r} (received {got or 'no parts'}); TF.js sends "
            f"{JSON_FIELD!r} and {WEIGHTS_FIELD!r}"
        )
    doc = await parsing
    work = asyncio.ensure_future(
        asyncio.to_thread(_check_parts, doc, json_info, weights_info, spool)
    )
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await work  # it still reads the spool: let it finish before the spool is freed
        raise


def _parse_json(json_bytes: bytes) -> ModelJSON:
    """Parse the model.json part (runs in a worker thread)."""
    with gc_paused():  # millions of acyclic objects: no stop-the-world collections meanwhile
        return ModelJSON.parse(json_bytes, _part_label(JSON_FIELD), require_topology=False)


def _check_parts(doc: ModelJSON, json_info, weights_info, spool: Spool) -> Upload:
    """Check the weights part against the parsed model.json (runs in a worker thread)."""
    uses_part = _manifest_uses_weights_part(doc)
    needed = expected_weight_bytes(doc)
    if weights_info is None and uses_part and (needed is None or needed > 0):
        need = f"{needed} bytes" if needed is not None else "bytes"
        raise UploadError(
            f"missing part {WEIGHTS_FIELD!r}: the manifest's {len(doc.weight_specs)} "
            f"weights need {need}"
        )
    if weights_info is not None and not uses_part and spool.size:
        raise UploadError(
            f"{_part_label(WEIGHTS_FIELD)} holds {spool.size} bytes but the manifest "
            f"lists no weight file"
        )
    view = spool.view()
    check_weight_bytes(doc, view)
    artifacts = ModelArtifacts.from_model_json(doc, view)
    return Upload(artifacts, doc, json_info, weights_info, spool)


async def read_upload_bytes(content_type: str, body: bytes, **options: Any) -> Upload:
    """:func:`read_upload` over a complete body held in memory.

    Parameters
    ----------
    content_type : str
        The ``Content-Type`` header, boundary included.
    body : bytes
    **options
        As for :func:`read_upload`.
    """
    loop = asyncio.get_running_loop()
    protocol = BaseProtocol(loop)
    # the whole body is fed at once: a limit below it would pause a reader that has none
    stream = aiohttp.StreamReader(protocol, max(2**16, len(body) + 1), loop=loop)
    stream.feed_data(body)
    stream.feed_eof()
    headers = {hdrs.CONTENT_TYPE: content_type, hdrs.CONTENT_LENGTH: str(len(body))}
    return await read_upload(headers, stream, **options)
