"""One hierarchy for every error tfjsfs raises.

Every class derives from :class:`TFJSError`. Format problems are also
:class:`ValueError`, missing things are also :class:`FileNotFoundError`, and
transfer failures are also :class:`OSError`, writes to read-only things are
also :class:`PermissionError`, so callers that already catch the
builtin kinds keep working.

Messages always name the file, the weight and the byte counts involved.
"""

from __future__ import annotations

__all__ = [
    "BundleExistsError",
    "CLIError",
    "ConcurrentUpdateError",
    "FormatError",
    "HandlerNotFoundError",
    "ManifestError",
    "MissingProtocolError",
    "ModelChangedError",
    "ModelNotFoundError",
    "QuantizationError",
    "ReadOnlyError",
    "RedirectError",
    "ShardMissingError",
    "SizeMismatch",
    "TFJSError",
    "TransferError",
    "Transient",
    "Truncated",
    "UnsafePathError",
    "UploadError",
    "UploadTooLargeError",
    "WeightDataError",
]


class TFJSError(Exception):
    """Base class of every tfjsfs error."""


class FormatError(TFJSError, ValueError):
    """A model.json or weight buffer does not follow the TF.js format."""


class ManifestError(FormatError):
    """model.json is malformed: bad JSON, missing keys, bad weight entries."""


class QuantizationError(FormatError):
    """A weight's quantization metadata is missing or unsupported."""


class WeightDataError(FormatError):
    """Weight bytes disagree with the manifest (short, long or undecodable)."""


class UnsafePathError(TFJSError, ValueError):
    """A manifest path escapes the model folder or names another host."""


class MissingProtocolError(TFJSError, ValueError):
    """A ``tfjs`` URL or filesystem does not say which backend holds the files."""


class ModelNotFoundError(TFJSError, FileNotFoundError):
    """No model.json at the given location."""


class ShardMissingError(TFJSError, FileNotFoundError):
    """A weight shard named in the manifest does not exist."""


class BundleExistsError(TFJSError, FileExistsError):
    """A bundle already exists where a create-only save was asked for."""


class ConcurrentUpdateError(TFJSError, RuntimeError):
    """Another writer published a model.json between this writer's read of it and
    its own publication (a lost compare-and-swap); nothing of this writer's is live.

    Attributes
    ----------
    path : str
        The model.json.
    """

    def __init__(self, message: str, path: str = ""):
        super().__init__(message)
        self.path = path

    def __reduce__(self):
        return type(self), (str(self), self.path)


class ModelChangedError(TFJSError, RuntimeError):
    """A model was replaced in the store while it was being read; read it again."""


class ReadOnlyError(TFJSError, PermissionError):
    """Virtual tensor files and folders cannot be written, moved or removed."""


class HandlerNotFoundError(TFJSError, ValueError):
    """No IOHandler (or more than one) matches a URL."""


class TransferError(TFJSError, OSError):
    """A transfer failed after retries (HTTP status, reset, truncated body)."""


class UploadError(FormatError):
    """A TF.js multipart upload is incomplete or inconsistent."""


class UploadTooLargeError(UploadError):
    """An upload is larger than the server accepts (HTTP 413).

    Attributes
    ----------
    limit : int
        Bytes allowed.
    received : int
        Bytes seen (or announced) when the limit was hit.
    """

    def __init__(self, message: str, limit: int, received: int):
        super().__init__(message)
        self.limit = limit
        self.received = received

    def __reduce__(self):
        return type(self), (str(self), self.limit, self.received)


class UploadEncodingError(UploadError):
    """An upload body is sent with a ``Content-Encoding`` (HTTP 415): TF.js
    sends bytes as they are, and a compressed body could grow without bound."""


class SizeMismatch(WeightDataError):
    """A shard's size is not what the plan assumed.

    Attributes
    ----------
    path : str
    expected, actual : int or None
    """

    def __init__(self, message: str, path: str, expected: int | None, actual: int | None):
        super().__init__(message)
        self.path = path
        self.expected = expected
        self.actual = actual

    def __reduce__(self):
        return type(self), (str(self), self.path, self.expected, self.actual)


class RedirectError(TransferError):
    """A redirect the load options do not allow (``follow_redirects``).

    Attributes
    ----------
    target : str
        Where the server redirected to.
    """

    def __init__(self, message: str, target: str):
        super().__init__(message)
        self.target = target

    def __reduce__(self):
        return type(self), (str(self), self.target)


class Transient(TransferError):
    """A failure worth retrying (a 5xx status, a reset, a short body)."""


class Truncated(Transient):
    """A body ended before all its bytes arrived.

    Attributes
    ----------
    expected, received : int
        Byte counts of the request.
    """

    def __init__(self, message: str, expected: int, received: int):
        super().__init__(message)
        self.expected = expected
        self.received = received

    def __reduce__(self):
        return type(self), (str(self), self.expected, self.received)


class CLIError(TFJSError, ValueError):
    """A command-line argument or option that makes no sense (a one-line message)."""
