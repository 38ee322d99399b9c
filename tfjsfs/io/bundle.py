"""A located bundle: its model.json, where each shard is, and how big it is.

* model.json is found from a folder or taken as given (any ``.json`` name);
  over HTTP a folder means ``<folder>/model.json`` (servers seldom list).
* Shard locations follow TF.js's ``getWeightUrls`` (:mod:`tfjsfs.io.shardurls`).
* Shard sizes come from one listing of the folder where the backend lists;
  over HTTP they are derived from the manifest when the converter's blind
  4 MiB cuts explain the group's byte count (every reply is checked against
  them, and a mismatch falls back to ``HEAD``), otherwise from ``HEAD``.
* :func:`~tfjsfs.format.columns.plain_layout` places every weight of a plain
  manifest (no strings, no quantization) in one quick pass into compact
  columns, so that loading a model of tens of thousands of tensors is not
  dominated by bookkeeping, and a whole load drops the parsed document before
  it allocates the weights; anything else goes through the validating
  :class:`~tfjsfs.format.manifest.ModelJSON`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import posixpath
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .._util.concurrency import gather_bounded
from .._util.retry import RetryPolicy, with_retries
from ..errors import (
    ManifestError,
    ModelNotFoundError,
    ShardMissingError,
    SizeMismatch,
    TransferError,
    Transient,
)
from ..format.columns import GroupLayout, parse_model_json, plain_layout
from ..format.layouts import DEFAULT_SHARD_SIZE, json_candidates
from ..format.manifest import ModelJSON, WeightIndex
from .found import list_folder
from .httpget import body_chunks, http_get, request_kwargs
from .shardurls import (
    LoadOptions,
    folder_of,
    is_http,
    resolve_shard_paths,
    resolve_shards,
)
from .writer import is_local

__all__ = [
    "Bundle",
    "GroupLayout",
    "LoadOptions",
    "is_http",
    "locate_model_json",
    "open_bundle",
    "parse_model_json",
    "plain_layout",
    "resolve_shard_paths",
    "shard_size_limits",
    "shard_sizes",
]

DEFAULT_BATCH_SIZE = 32
#: Bytes a group's shards may hold past its last weight (tolerated, and
#: reported as a problem); more is a :class:`~tfjsfs.errors.SizeMismatch`
#: before anything is read or allocated.
MAX_TRAILING_BYTES = 64 << 10


class Bundle:
    """A located bundle.

    ``Bundle(json_path, doc, shard_paths)`` with a :class:`ModelJSON` (or the
    parsed JSON dict as ``raw=``).

    Attributes
    ----------
    json_path : str
        Inner path (a URL over HTTP) of model.json.
    doc : ModelJSON
        model.json, fully validated (parsed from ``raw`` on first use).
    raw : dict
        model.json as parsed JSON.
    shard_paths : list of list of str
        Inner path of every shard, per group, in manifest order.
    fs : AsyncFileSystem or None
        The filesystem holding model.json.
    shard_fs : dict
        Filesystems of shards that live on another backend, by path.
    headers : dict
        Extra HTTP headers for every request.
    sizes : list of list of int, or None
        Shard sizes once known; ``sizes_guessed`` when derived from the
        manifest (replies are checked against them).
    index : WeightIndex or None
        Every weight placed in the shards (string lengths walked): cached by
        :func:`tfjsfs.io.fetch.load_index` and :func:`tfjsfs.io.transfer.open_source`.
    json_bytes : bytes or None
        model.json exactly as read (kept by :func:`open_bundle` until the
        manifest is released), so copies reuse it without a second read.
    version : dict
        Which version of model.json this bundle was read from (the listing
        fields that change when the file is rewritten: size, ETag,
        generation, mtime); empty when unknown. Kept by the filesystem's
        catalog to tell a cached manifest from a rewritten one.
    """

    def __init__(
        self,
        json_path: str,
        doc: ModelJSON | Mapping[str, Any] | None = None,
        shard_paths: list[list[str]] | None = None,
        *,
        raw: Mapping[str, Any] | None = None,
        fs: Any = None,
        shard_fs: dict[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ):
        if doc is not None and not isinstance(doc, ModelJSON):
            raw, doc = doc, None
        if doc is None and raw is None:
            raise ValueError("a Bundle needs its model.json (doc or raw)")
        self.json_path = json_path
        self._doc = doc
        self._raw = dict(raw) if raw is not None else None
        self.shard_paths = shard_paths if shard_paths is not None else []
        self.fs = fs
        self.shard_fs = dict(shard_fs or {})
        self.headers = dict(headers or {})
        self.sizes: list[list[int]] | None = None
        self.sizes_guessed = False
        self.group_starts: list[int] | None = None
        self.index: WeightIndex | None = None
        self._layout: list[GroupLayout] | bool | None = False
        self._text: bytes | None = None
        self.json_bytes: bytes | None = None
        self.version: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"Bundle({self.json_path!r}, {sum(map(len, self.shard_paths))} shards)"

    @property
    def doc(self) -> ModelJSON:
        """model.json, fully validated (parsed on first use)."""
        if self._doc is None:
            self._doc = ModelJSON.parse(self.raw, self.json_path)
        return self._doc

    @property
    def raw(self) -> dict:
        """model.json as parsed JSON."""
        if self._raw is None:
            if self._text is not None:
                self._raw = parse_model_json(self._text, self.json_path)
            elif self._doc is not None:
                self._raw = self._doc.to_json()
            else:
                raise RuntimeError(f"{self.json_path}: the manifest was released")
        return self._raw

    def release_manifest(self) -> None:
        """Drop model.json entirely, keeping only the layout's columns (end of a load)."""
        if self.layout is not None:
            self._text = self._raw = self._doc = self.json_bytes = None

    def compact(self, text: bytes) -> None:
        """Keep model.json as its *text* and drop the parsed objects until needed again.

        For a plain manifest of tens of thousands of weights the parsed dicts
        take several times the text's size; the layout's columns keep all a
        load needs, and error paths re-parse on demand.
        """
        if self.layout is not None:
            self._text = bytes(text)
            self._raw = None
            self._doc = None

    @property
    def layout(self) -> list[GroupLayout] | None:
        """:func:`~tfjsfs.format.columns.plain_layout` of the manifest, or None when
        it is not plain."""
        if self._layout is False:
            self._layout = plain_layout(self.raw.get("weightsManifest"))
        return self._layout

    @property
    def folder(self) -> str:
        """The folder holding model.json."""
        return folder_of(self.json_path)

    def fs_for(self, path: str) -> Any:
        """The filesystem holding *path*."""
        return self.shard_fs.get(path, self.fs)

    def group_bytes(self) -> list[int | None]:
        """Each group's weight bytes from the manifest (None where strings make it vary)."""
        layout = self.layout
        if layout is not None:
            return [g.nbytes for g in layout]
        return [g.expected_bytes for g in self.doc.weights_manifest]

    def weights_in(self, path: str, limit: int = 3) -> list[str]:
        """Names of (up to *limit*) weights stored in shard *path*."""
        if self.sizes is None:
            return []
        for g, paths in enumerate(self.shard_paths):
            if path not in paths:
                continue
            i = paths.index(path)
            lo = sum(self.sizes[g][:i])
            hi = lo + self.sizes[g][i]
            names = []
            for name, start, end in self._extents(g):
                if (start < hi and end > lo) or (start == end == lo):
                    names.append(name)
                    if len(names) >= limit:
                        break
                if start >= hi:
                    break
            return names
        return []

    def _extents(self, g: int):
        """``(name, start, end)`` of group *g*'s weights, as far as they can be placed."""
        if self.layout is not None:
            if g < len(self.layout):
                for name, _, _, start, end in self.layout[g].weights():
                    yield name, start, end
            return
        groups = self.raw.get("weightsManifest")
        if not isinstance(groups, list) or g >= len(groups):
            return
        if self.index is not None:
            for spec in self.doc.weights_manifest[g].weights:
                loc = self.index.locations.get(spec.name)
                if loc is None:
                    return
                yield spec.name, loc.start, loc.end
        else:
            offset = 0
            for spec in self.doc.weights_manifest[g].weights:
                if spec.byte_length is None:
                    return
                yield spec.name, offset, offset + spec.byte_length
                offset += spec.byte_length

    def describe(self, path: str) -> str:
        """``"<model.json>: weight shard <path> (weights 'a', 'b')"`` for messages."""
        names = self.weights_in(path)
        text = f"{self.json_path}: weight shard {path}"
        if names:
            more = ", …" if len(names) > 2 else ""
            text += f" (weights {', '.join(map(repr, names[:2]))}{more})"
        return text


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many acyclic objects.

    Parsing a manifest of tens of thousands of weights makes hundreds of
    thousands of dicts and tuples, none of them cyclic; collections triggered
    meanwhile only cost time. The collector's previous state is restored.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# ----------------------------------------------------------------- locating


async def locate_model_json(fs: Any, path: str) -> str:
    """The model JSON of the bundle at *path* (a folder or a ``.json`` file).

    Over HTTP a folder URL means ``<folder>/model.json`` (its query kept).

    Raises
    ------
    ModelNotFoundError
        No JSON file there, or several candidates and none named model.json.
    """
    if is_http(fs):
        parts = urllib.parse.urlsplit(path)
        if parts.path.endswith(".json"):
            return path
        folder = parts.path.rstrip("/")
        return urllib.parse.urlunsplit(parts._replace(path=f"{folder}/model.json"))
    path = path.rstrip("/")
    if path.endswith(".json"):
        return path
    try:
        names = await fs._ls(path, detail=False)
    except (FileNotFoundError, NotADirectoryError):
        raise ModelNotFoundError(f"no model at {path}: the folder does not exist") from None
    candidates = json_candidates(names)
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise ModelNotFoundError(f"no model.json (or other .json) in {path}")
    raise ModelNotFoundError(
        f"{path} holds several JSON files and no model.json: "
        + ", ".join(posixpath.basename(c) for c in candidates)
        + "; address the model by its JSON file"
    )


async def read_json_bytes(
    fs: Any,
    json_path: str,
    headers: Mapping[str, str] | None = None,
    policy: RetryPolicy | None = None,
) -> bytes:
    """model.json's bytes, retrying transient failures.

    Reads at most ``policy.max_json_bytes + 1`` bytes (decoded, over HTTP).

    Raises
    ------
    ManifestError
        model.json is larger than ``policy.max_json_bytes``.
    """
    policy = policy or RetryPolicy()
    cap = policy.max_json_bytes
    if is_http(fs):

        async def attempt(_: int) -> bytes:
            return await _http_json(fs, json_path, headers or {}, cap)

    elif is_local(fs):  # a read of cap + 1 bytes would allocate them all first

        async def attempt(_: int) -> bytes:
            return await asyncio.to_thread(_read_local, json_path, cap)

    else:

        async def attempt(_: int) -> bytes:
            return await fs._cat_file(json_path, start=0, end=cap + 1)

    try:
        data = await with_retries(
            attempt, policy, json_path, timeout=policy.total_timeout(min(cap, 64 << 20))
        )
    except FileNotFoundError:
        hint = ""
        if is_http(fs):
            hint = "; check that this URL points to the model JSON of the model to load"
        raise ModelNotFoundError(f"{json_path} does not exist{hint}") from None
    except TransferError:
        raise
    except Exception as exc:
        status = getattr(exc, "status", None)
        if status is not None:
            raise TransferError(
                f"request to {json_path} failed with status code {status}; check that "
                "this URL points to the model JSON of the model to load"
            ) from exc
        raise
    if len(data) > cap:
        raise ManifestError(
            f"{json_path}: model.json holds more than {cap} bytes, the largest this load "
            "reads (raise it with max_json_bytes=)"
        )
    return data


def _read_local(path: str, cap: int) -> bytes:
    """A local file's bytes, at most *cap* + 1 of them (allocating no more than it holds)."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        return fh.read(min(size, cap) + 1)


async def _http_json(fs: Any, url: str, headers: Mapping[str, str], cap: int) -> bytes:
    """GET model.json over HTTP, reading (and decompressing) at most *cap* + 1 bytes.

    Redirects are followed wherever they lead: shard locations are resolved
    against the URL asked for, not where model.json was found.
    """
    session = await fs.set_session()
    kwargs = request_kwargs(fs, headers)
    async with http_get(session, fs.encode_url(url), follow="any", what=url, **kwargs) as resp:
        if resp.status in (404, 410):
            raise FileNotFoundError(url)
        if resp.status >= 500 or resp.status in (408, 429):
            raise Transient(f"{url}: HTTP {resp.status} {resp.reason or ''}".strip())
        resp.raise_for_status()
        parts = []
        async for chunk in body_chunks(resp, cap, url):
            parts.append(chunk)
        return b"".join(parts)


async def open_bundle(
    fs: Any,
    path: str,
    *,
    allow_outside: bool = False,
    options: LoadOptions | None = None,
    policy: RetryPolicy | None = None,
    validate: bool = True,
) -> Bundle:
    """Locate and parse the bundle at *path* on the async filesystem *fs*.

    Parameters
    ----------
    fs : AsyncFileSystem
    path : str
        Inner path (URL over HTTP) of the folder or its model JSON.
    allow_outside : bool
        Shortcut for ``options.allow_outside``.
    options : LoadOptions, optional
    policy : RetryPolicy, optional
    validate : bool
        Validate all of model.json now (else on first use of ``doc``; the
        weights manifest is always checked before anything is sized from it).
    """
    options = options or LoadOptions()
    if allow_outside and not options.allow_outside:
        options = LoadOptions(**{**options.__dict__, "allow_outside": True})
    headers = dict(options.headers or {})
    if headers and not is_http(fs):
        raise ValueError("headers= applies to HTTP(S) models only")
    json_path = await locate_model_json(fs, path)
    data = await read_json_bytes(fs, json_path, headers, policy)
    with gc_paused():  # tens of thousands of small objects: no collections meanwhile
        raw = parse_model_json(data, json_path)
        bundle = Bundle(json_path, raw=raw, fs=fs, headers=headers)
        if validate or bundle.layout is None:
            bundle.doc  # noqa: B018 - raises ManifestError on a bad document
        else:  # the manifest is plain; check the other fields cheaply
            ModelJSON.parse({**raw, "weightsManifest": []}, json_path)
    bundle.shard_paths, bundle.shard_fs = await resolve_shards(fs, json_path, raw, options)
    bundle.json_bytes = bytes(data)
    if not validate:
        bundle.compact(data)
    return bundle


# ------------------------------------------------------------------- sizes


def guess_sizes(bundle: Bundle) -> list[list[int]] | None:
    """Shard sizes implied by the manifest under the converter's blind cuts, or None."""
    out = []
    for paths, total in zip(bundle.shard_paths, bundle.group_bytes(), strict=True):
        n = len(paths)
        if total is None:
            return None
        if n == 0:
            if total:
                return None
            out.append([])
        elif n == 1:
            out.append([total])
        elif (n - 1) * DEFAULT_SHARD_SIZE < total <= n * DEFAULT_SHARD_SIZE:
            out.append([DEFAULT_SHARD_SIZE] * (n - 1) + [total - (n - 1) * DEFAULT_SHARD_SIZE])
        else:
            return None
    return out


async def head_size(
    fs: Any,
    url: str,
    headers: Mapping[str, str],
    policy: RetryPolicy,
    limit: int | None = None,
) -> int:
    """Size of an HTTP resource from ``HEAD`` (or a one-byte range GET).

    A server that answers neither with a size has its body counted, reading
    at most *limit* + 1 bytes (so a result above *limit* means "too long").
    """
    session = await fs.set_session()
    kwargs = request_kwargs(fs, headers)
    base = dict(kwargs.pop("headers", None) or {})
    follow = policy.follow_redirects
    target = fs.encode_url(url)

    async def attempt(_: int) -> int:
        async with http_get(
            session, target, follow=follow, what=url, method="HEAD", headers=base, **kwargs
        ) as resp:
            if resp.status == 404:
                raise FileNotFoundError(url)
            resp.raise_for_status()
            length = resp.headers.get("Content-Length")
            if length is not None and "Content-Encoding" not in resp.headers:
                return int(length)
        ranged = {**base, "Range": "bytes=0-0", "Accept-Encoding": "identity"}
        async with http_get(
            session, target, follow=follow, what=url, headers=ranged, **kwargs
        ) as resp:
            if resp.status == 404:
                raise FileNotFoundError(url)
            resp.raise_for_status()
            total = resp.headers.get("Content-Range", "").rpartition("/")[2]
            if resp.status == 206 and total.isdigit():
                return int(total)
            count = 0
            async for chunk in body_chunks(resp, limit, url):
                count += len(chunk)
            return count

    return await with_retries(attempt, policy, url, timeout=policy.timeout)


async def shard_sizes(
    fs: Any,
    bundle: Bundle,
    *,
    policy: RetryPolicy | None = None,
    batch_size: int | None = None,
    guess: bool = False,
) -> list[list[int]]:
    """Byte size of every shard, per group; cached on the bundle.

    From one listing of the folder where the backend lists (listed again,
    bypassing fsspec's cached listing, when a shard is missing from it or the
    sizes disagree with the manifest); over HTTP from
    ``HEAD``, or with ``guess`` from the manifest when the converter's blind
    4 MiB cuts explain it (marked ``sizes_guessed``: readers then check every
    reply against them, and loads re-size with ``HEAD`` if they prove wrong).

    Raises
    ------
    ShardMissingError
        Naming the shard and the model.json that refers to it.
    """
    if bundle.sizes is not None and (guess or not bundle.sizes_guessed):
        return bundle.sizes
    policy = policy or RetryPolicy()
    wanted = list(dict.fromkeys(p for group in bundle.shard_paths for p in group))
    http_paths = [p for p in wanted if is_http(bundle.fs_for(p))]
    if guess and http_paths and len(http_paths) == len(wanted):
        guessed = guess_sizes(bundle)
        if guessed is not None:
            bundle.sizes, bundle.sizes_guessed = guessed, True
            return guessed
    sizes: dict[str, int] = {}
    listed = [p for p in wanted if not is_http(bundle.fs_for(p))]
    if listed:
        sizes = _file_sizes(await list_folder(fs, bundle.json_path), set(listed))
        if len(sizes) < len(listed) or not _agrees(bundle, sizes):
            # the listing may be stale (fsspec caches it): list again
            fs.invalidate_cache(bundle.folder)
            sizes = _file_sizes(await list_folder(fs, bundle.json_path), set(listed))

    limits = _size_limits(bundle)

    async def one(path: str) -> None:
        where = bundle.fs_for(path)
        try:
            if is_http(where):
                limit = limits.get(path)
                sizes[path] = await head_size(where, path, bundle.headers, policy, limit)
                return
            info = await where._info(path)
        except FileNotFoundError:
            raise ShardMissingError(
                f"{bundle.json_path}: weight shard {path} does not exist"
            ) from None
        if info.get("type") != "file" or info.get("size") is None:
            raise ShardMissingError(f"{bundle.json_path}: weight shard {path} is not a file")
        sizes[path] = int(info["size"])

    await gather_bounded((one(p) for p in wanted if p not in sizes), batch_size or 32)
    measured = [[sizes[p] for p in group] for group in bundle.shard_paths]
    _check_not_too_long(bundle, measured)
    if bundle.sizes is not None and bundle.sizes != measured:
        bundle.index = None  # built on the guess, which was wrong
    bundle.sizes, bundle.sizes_guessed = measured, False
    return measured


def _file_sizes(listing: Mapping[str, Mapping[str, Any]], want: set[str]) -> dict[str, int]:
    """Sizes of the files in *want* found in a folder's *listing* (:func:`list_folder`)."""
    return {
        name: int(entry["size"])
        for name, entry in listing.items()
        if name in want and entry.get("type") == "file" and entry.get("size") is not None
    }


def _agrees(bundle: Bundle, sizes: Mapping[str, int]) -> bool:
    """Whether the listed *sizes* add up to what the manifest declares, group by group."""
    for paths, expected in zip(bundle.shard_paths, bundle.group_bytes(), strict=True):
        known = expected is not None and all(p in sizes for p in paths)
        if known and sum(sizes[p] for p in paths) != expected:
            return False
    return True


def shard_size_limits(
    shard_paths: Sequence[Sequence[str]], group_bytes: Sequence[int | None]
) -> dict[str, int]:
    """The most bytes each shard may hold: its group's weight bytes plus
    :data:`MAX_TRAILING_BYTES` (shards of groups whose size varies have none)."""
    out: dict[str, int] = {}
    for paths, expected in zip(shard_paths, group_bytes, strict=True):
        if expected is not None:
            for path in paths:
                out[path] = min(out.get(path, expected), expected) + MAX_TRAILING_BYTES
    return out


def _size_limits(bundle: Bundle) -> dict[str, int]:
    return shard_size_limits(bundle.shard_paths, bundle.group_bytes())


def _check_not_too_long(bundle: Bundle, sizes: Sequence[Sequence[int]]) -> None:
    """Refuse shards holding far more than their weights need, before anything is read.

    Raises
    ------
    SizeMismatch
        Naming the group's shards, their sizes and the manifest's byte count.
    """
    for g, (paths, group, expected) in enumerate(
        zip(bundle.shard_paths, sizes, bundle.group_bytes(), strict=True)
    ):
        total = sum(group)
        if expected is None or total <= expected + MAX_TRAILING_BYTES:
            continue
        shards = ", ".join(f"{p} ({n} bytes)" for p, n in zip(paths, group, strict=True))
        raise SizeMismatch(
            f"{bundle.json_path}: the shards of group {g + 1} hold {total} bytes but the "
            f"manifest declares {expected} (more than {MAX_TRAILING_BYTES} trailing bytes "
            f"are refused; shards: {shards})",
            paths[-1],
            expected,
            total,
        )


def group_offsets(sizes: Sequence[Sequence[int]], align: int = 1) -> list[int]:
    """Start of each group in one buffer holding all groups in order.

    With *align* > 1 every group starts on a multiple of it (so that the
    tensors of every group can be aligned views), else they are back to back.
    """
    out, offset = [], 0
    for group in sizes:
        offset = -(-offset // align) * align
        out.append(offset)
        offset += sum(group)
    return out
