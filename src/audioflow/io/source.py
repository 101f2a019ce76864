"""Where the bytes come from: a local path, an fsspec URL, ``bytes`` or a binary file object.

:func:`open_source` turns any of these into a :class:`Source` that knows its name (for error
messages), its size, its first bytes (for format sniffing) and, for local files, its path, so
the decoders can hand the path straight to their C libraries (the fastest way in).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any

from ..errors import AudioFileNotFoundError, AudioPermissionError, DecodeError, ParameterError, SourceError

HEAD_BYTES = 4096  # enough for every header we parse, and for sniffing the container
_URL_MARK = "://"


@dataclass
class Source:
    """An opened audio source.

    Attributes:
        name: the path or URL, or ``<bytes>``/``<file object>``, used in messages.
        size: total size in bytes.
        head: the first up to ``HEAD_BYTES`` bytes.
        path: the local filesystem path, when there is one.
        file: a seekable binary file object positioned anywhere (callers seek first).
    """

    name: str
    size: int
    head: bytes
    path: str | None
    file: IO[bytes]
    _owned: list[Any] = field(default_factory=list, repr=False)

    def read_at(self, offset: int, n: int) -> bytes:
        """Up to ``n`` bytes from byte ``offset``."""
        if offset < len(self.head) and offset + n <= len(self.head):
            return self.head[offset:offset + n]
        self.file.seek(offset)
        return self.file.read(n)

    def read_all(self) -> bytes:
        """The whole content (for decoders that take a memory buffer)."""
        if len(self.head) == self.size:
            return self.head
        self.file.seek(0)
        return self.file.read()

    def close(self) -> None:
        for obj in reversed(self._owned):
            obj.close()


def source_name(source: Any) -> str:
    """A short description of ``source`` for messages, without opening it."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>"
    return str(getattr(source, "name", None) or getattr(source, "path", None) or "<file object>")


def is_url(source: str) -> bool:
    return _URL_MARK in source and not source.startswith("file://")


@contextmanager
def open_source(source: Any, storage_options: dict[str, Any] | None = None) -> Iterator[Source]:
    """Open ``source`` for reading; raises :class:`SourceError` subclasses naming it on failure."""
    src = _open(source, storage_options)
    try:
        yield src
    finally:
        src.close()


def _open(source: Any, storage_options: dict[str, Any] | None) -> Source:
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if isinstance(source, str):
        if source.startswith("file://"):
            source = source[len("file://"):]
        if is_url(source):
            return _open_url(source, storage_options or {})
        return _open_local(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        return Source("<bytes>", len(data), data[:HEAD_BYTES], None, io.BytesIO(data))
    if hasattr(source, "read"):
        return _open_fileobj(source)
    raise ParameterError(f"cannot read audio from a {type(source).__name__}; pass a path, URL, bytes "
                         "or a binary file object")


def _open_local(path: str) -> Source:
    try:
        f = open(path, "rb")  # noqa: SIM115  (closed by Source.close)
    except FileNotFoundError:
        raise AudioFileNotFoundError("no such file", path) from None
    except IsADirectoryError:
        raise SourceError("is a directory, not an audio file", path) from None
    except PermissionError:
        raise AudioPermissionError("permission denied", path) from None
    except OSError as e:
        raise SourceError(f"cannot open: {e.strerror or e}", path) from None
    try:
        size = os.fstat(f.fileno()).st_size
        head = f.read(HEAD_BYTES)
    except OSError as e:  # e.g. EISDIR on some systems, EIO on a bad disk
        f.close()
        raise SourceError(f"cannot read: {e.strerror or e}", path) from None
    return Source(path, size, head, path, f, [f])


def _open_url(url: str, storage_options: dict[str, Any]) -> Source:
    try:
        import fsspec
    except ImportError:  # pragma: no cover - fsspec is a core dependency
        raise SourceError("reading URLs needs fsspec", url) from None
    try:
        of = fsspec.open(url, "rb", **storage_options)
        f = of.open()
    except ImportError as e:
        raise SourceError(f"no filesystem for this URL scheme ({e}); install audioflow[remote]", url) from None
    except Exception as e:  # fsspec backends raise their own types (botocore, aiohttp, google.auth...)
        raise remote_error(e, url) from None
    try:
        size = f.size if getattr(f, "size", None) is not None else _seek_size(f)
        head = f.read(HEAD_BYTES)
    except Exception as e:
        f.close()
        raise remote_error(e, url, "read") from None
    return Source(url, int(size), head, None, f, [f])


def remote_error(error: BaseException, url: str, doing: str = "open") -> SourceError:
    """One line naming ``url`` and the real cause of a failed remote ``doing`` ('open', 'read', 'list',
    'write'), for any fsspec backend: fsspec's HTTP filesystem reports an unresolvable host or a refused
    connection as FileNotFoundError, with the cause chained; S3 reports missing credentials as botocore's
    NoCredentialsError, outside the OSError tree."""
    chain, seen = [], error
    while seen is not None and len(chain) < 8:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    names = {type(e).__name__ for e in chain}
    import socket

    host = url.split("://", 1)[-1].split("/", 1)[0]
    if any(isinstance(e, socket.gaierror) for e in chain) or "ClientConnectorDNSError" in names:
        return SourceError(f"cannot {doing}: host {host!r} not found (DNS)", url)
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return SourceError(f"cannot {doing}: connection to {host!r} refused", url)
    if any(isinstance(e, TimeoutError) for e in chain) or "ServerTimeoutError" in names:
        return SourceError(f"cannot {doing}: {host!r} timed out", url)
    if names & {"NoCredentialsError", "PartialCredentialsError", "DefaultCredentialsError"}:
        return AudioPermissionError(f"cannot {doing}: no credentials for {url.split('://', 1)[0]}:// (set them in "
                                    "the environment, e.g. AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or pass "
                                    "storage_options; {'anon': True} for a public bucket)", url)
    if names & {"ClientConnectorError", "EndpointConnectionError", "ConnectionError", "ClientOSError"}:
        return SourceError(f"cannot {doing}: cannot connect to {host!r}", url)
    if isinstance(error, PermissionError):
        return AudioPermissionError(f"cannot {doing}: access denied", url)
    if isinstance(error, FileNotFoundError):
        return AudioFileNotFoundError("no such object", url)
    if isinstance(error, IsADirectoryError):
        return SourceError("is a folder (a prefix), not an audio object", url)
    detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return SourceError(f"cannot {doing}: {type(error).__name__}{': ' + detail[:200] if detail else ''}", url)


def _open_fileobj(f: IO[bytes]) -> Source:
    name = source_name(f)
    if not (getattr(f, "seekable", lambda: False)()):
        data = f.read()  # a pipe or socket: the decoders need to seek, so buffer it
        if not isinstance(data, (bytes, bytearray)):
            raise ParameterError("file object must be opened in binary mode", name)
        return Source(name, len(data), bytes(data[:HEAD_BYTES]), None, io.BytesIO(data))
    start = f.tell()
    if start:  # treat the current position as the start of the audio, as soundfile does not
        data = f.read()
        return Source(name, len(data), bytes(data[:HEAD_BYTES]), None, io.BytesIO(data))
    size = _seek_size(f)
    head = f.read(HEAD_BYTES)
    if not isinstance(head, (bytes, bytearray)):
        raise ParameterError("file object must be opened in binary mode", name)
    return Source(name, size, bytes(head), getattr(f, "name", None) if _is_real_file(f) else None, f)


def _is_real_file(f: Any) -> bool:
    return isinstance(f, io.BufferedReader) and isinstance(getattr(f, "name", None), str) \
        and os.path.isfile(f.name)


def _seek_size(f: IO[bytes]) -> int:
    f.seek(0, os.SEEK_END)
    size = f.tell()
    f.seek(0)
    return size


def require_bytes(src: Source, minimum: int) -> None:
    """Refuse a source too short to hold even a header."""
    if src.size == 0:
        raise DecodeError("empty file (0 bytes)", src.name)
    if src.size < minimum:
        raise DecodeError(f"too short to be audio ({src.size} bytes)", src.name)
