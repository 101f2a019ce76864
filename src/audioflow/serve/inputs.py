"""Audio in a request: a multipart upload, a raw body with an audio content type, JSON with base64
(``audio_base64``) or, when the operator allows it, a URL. Every form is spooled to a file of the
server's own naming as it arrives (never held whole in memory, never under a name the client chose), and
only a worker process opens it (:mod:`audioflow.serve.jobs`)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import http.client
import ipaddress
import json
import os
import socket
import ssl
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from typing import Any

from ..errors import (
    AudioflowError,
    AudioTooLargeError,
    DecodeError,
    MissingDependencyError,
    ParameterError,
    UnsupportedFormatError,
)
from .settings import ServeSettings

CHUNK = 1 << 16


class Problem(Exception):
    """An error answered to the client: HTTP ``status`` and an OpenAI-style body
    ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.headers = status, message, kind, param, headers

    def __reduce__(self):  # crosses the worker process boundary whole
        return (type(self), (self.status, self.message, self.kind, self.param, self.headers))

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.status}}


def problem_for(error: AudioflowError) -> Problem:
    """The HTTP answer to an error of the library: 415 for formats it cannot read, 413 for audio over a
    limit, 422 for corrupt audio, 400 for bad parameters."""
    message = str(error)
    if isinstance(error, UnsupportedFormatError):
        return Problem(415, message, param="file")
    if isinstance(error, AudioTooLargeError):
        return Problem(413, message, param="file")
    if isinstance(error, DecodeError):
        return Problem(422, message, param="file")
    if isinstance(error, ParameterError):
        return Problem(400, message)
    if isinstance(error, MissingDependencyError):  # this installation lacks an extra: the message names it
        return Problem(501, message, kind="not_implemented_error")
    return Problem(500, message, kind="server_error")


@dataclass
class Upload:
    """A request's audio, spooled to ``path`` (deleted by :meth:`discard`); ``name`` is how messages call
    it (``upload 'talk.wav'``); ``fields`` are a JSON body's other members."""

    path: str
    name: str = "upload"
    size: int = 0
    fields: dict[str, Any] = field(default_factory=dict)

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.path)


class Spool:
    """The folder uploads are spooled to: private to this process (mode 0700), made when first needed and
    removed when the app stops (an app can be started again: the next upload makes a new one)."""

    def __init__(self) -> None:
        self.folder: str | None = None

    def new_path(self) -> str:
        import tempfile

        if self.folder is None or not os.path.isdir(self.folder):
            self.folder = tempfile.mkdtemp(prefix="audioflow-spool-")
        return os.path.join(self.folder, uuid.uuid4().hex)

    def close(self) -> None:
        import shutil

        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None


async def spool_stream(chunks: Any, spool: Spool, limit: int, name: str) -> Upload:
    """Write an async iterator of byte chunks to a new spool file, refusing (413) past ``limit`` bytes."""
    upload = Upload(spool.new_path(), name)
    try:
        with open(upload.path, "wb") as f:
            async for chunk in chunks:
                upload.size += len(chunk)
                if upload.size > limit:
                    raise Problem(413, f"request body over {limit} bytes", param="file")
                f.write(chunk)
    except BaseException:
        upload.discard()
        raise
    return upload


async def _file_chunks(upload_file: Any) -> Any:
    while chunk := await upload_file.read(CHUNK):
        yield chunk


async def spool_upload_file(upload_file: Any, spool: Spool, limit: int) -> Upload:
    """A multipart part (Starlette's UploadFile) copied to the spool."""
    name = f"upload {upload_file.filename!r}" if upload_file.filename else "upload"
    try:
        return await spool_stream(_file_chunks(upload_file), spool, limit, name)
    finally:
        await upload_file.close()


async def read_json(request: Any, limit: int) -> Any:
    """A JSON body of at most ``limit`` bytes, parsed off the event loop; 400 for anything that does not
    parse (nesting deeper than Python's recursion limit included)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise Problem(413, f"JSON body over {limit} bytes: upload large audio as multipart or a raw body")
    try:
        return await asyncio.to_thread(json.loads, bytes(body))
    except (ValueError, RecursionError):
        raise Problem(400, "the JSON body does not parse") from None


def decode_base64(text: Any) -> bytes:
    if not isinstance(text, str) or not text:
        raise Problem(400, "audio_base64 must be a non-empty base64 string", param="audio_base64")
    if "," in text[:100] and text.startswith("data:"):  # a data: URL from a browser
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise Problem(400, "audio_base64 is not valid base64", param="audio_base64") from None


def spool_bytes(data: bytes, spool: Spool, name: str) -> Upload:
    upload = Upload(spool.new_path(), name, len(data))
    with open(upload.path, "wb") as f:
        f.write(data)
    return upload


# ---- URLs -------------------------------------------------------------------------------------------

_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


def address_is_public(address: str) -> bool:
    """Whether connecting to ``address`` reaches the public internet only: not loopback, private,
    link-local, multicast, reserved or site-local, and (IPv6) no IPv4 address embedded in a mapped,
    compatible, NAT64 or 6to4 form that is any of those; Teredo tunnels are refused outright."""
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.teredo is not None or ip.is_site_local:
            return False
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and (ip in _IPV4_COMPATIBLE or any(ip in net for net in _NAT64)):
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return address_is_public(str(embedded))
    return ip.is_global and not ip.is_multicast


def check_url(url: Any) -> tuple[urllib.parse.SplitResult, str, int]:
    """The parsed URL, its host name and port, for an http(s) URL without credentials (one parser, used
    for the check and the fetch alike)."""
    parsed = urllib.parse.urlsplit(str(url))
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise Problem(400, "url must be http(s)://host/...", param="url")
    if "@" in parsed.netloc:
        raise Problem(400, "url must not carry credentials (user@host)", param="url")
    try:
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
    except ValueError:
        raise Problem(400, "url has an invalid port", param="url") from None
    return parsed, parsed.hostname, port


def resolve_public(host: str, port: int) -> str:
    """One address for ``host`` that is public, resolved once (the fetch connects to this address, so a
    second DNS answer cannot send it elsewhere); any non-public answer refuses the host."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise Problem(400, f"cannot resolve {host}", param="url") from None
    addresses = [info[4][0] for info in infos]
    if not addresses or not all(address_is_public(a) for a in addresses):
        raise Problem(400, f"{host} resolves to a non-public address; refused", param="url")
    return addresses[0]


class _PinnedConnection(http.client.HTTPConnection):
    """HTTP to ``host`` (its name in the Host header) over a socket to the checked ``address``."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedTLSConnection(_PinnedConnection):
    def connect(self) -> None:
        super().connect()
        context = ssl.create_default_context()
        self.sock = context.wrap_socket(self.sock, server_hostname=self.host)  # certificate of the name


def fetch_url(url: Any, settings: ServeSettings, spool: Spool) -> Upload:
    """The audio at an http(s) URL, spooled, when the operator allowed URLs. The host is resolved once
    and must be public; the connection goes to that address; redirects are not followed; the whole
    download (connect, headers, body) has ``settings.url_timeout`` seconds and ``max_body_bytes``."""
    if not settings.allow_urls:
        raise Problem(400, "this server does not fetch URLs: upload the audio (the operator can allow URLs)",
                      param="url")
    parsed, host, port = check_url(url)
    return _download(parsed, host, port, resolve_public(host, port), settings, spool)


def _download(parsed: urllib.parse.SplitResult, host: str, port: int, address: str, settings: ServeSettings,
              spool: Spool) -> Upload:
    """GET ``parsed`` from ``address`` (already checked), naming ``host`` in the Host header and the TLS
    handshake, within ``settings.url_timeout`` seconds in all."""
    deadline = time.monotonic() + settings.url_timeout
    cls = _PinnedTLSConnection if parsed.scheme == "https" else _PinnedConnection
    connection = cls(host, port, address, timeout=max(0.1, deadline - time.monotonic()))
    shown = urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, parsed.path, "", ""))
    upload = Upload(spool.new_path(), shown)
    try:
        target = parsed.path or "/"
        if parsed.query:
            target += "?" + parsed.query
        connection.request("GET", target, headers={"User-Agent": "audioflow", "Accept": "*/*"})
        sock = connection.sock  # http.client lets go of it when the answer says Connection: close
        response = connection.getresponse()
        if response.status != 200:
            raise Problem(400, f"{shown} answered HTTP {response.status} (redirects are not followed)", param="url")
        with open(upload.path, "wb") as f:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Problem(400, f"{shown}: the download took over {settings.url_timeout:g} s", param="url")
                sock.settimeout(left)
                chunk = response.read1(CHUNK)
                if not chunk:
                    break
                upload.size += len(chunk)
                if upload.size > settings.max_body_bytes:
                    raise Problem(413, f"the audio at {shown} is over {settings.max_body_bytes} bytes", param="url")
                f.write(chunk)
    except Problem:
        upload.discard()
        raise
    except (OSError, http.client.HTTPException) as e:
        upload.discard()
        if isinstance(e, (TimeoutError, socket.timeout)) and time.monotonic() >= deadline - 0.05:
            raise Problem(400, f"{shown}: the download took over {settings.url_timeout:g} s", param="url") from None
        raise Problem(400, f"cannot fetch {shown}: {type(e).__name__}", param="url") from None
    except BaseException:  # whatever else goes wrong, nothing is left in the spool
        upload.discard()
        raise
    finally:
        connection.close()
    return upload
