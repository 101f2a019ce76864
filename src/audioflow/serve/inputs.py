"""Audio in a request: a multipart upload, a raw body with an audio content type, JSON with base64
(``audio_base64``) or, when the operator allows it, a URL. Limits are checked from the header before
anything is decoded; uploads are decoded from memory and never written under a name the client chose."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import socket
import urllib.parse
import urllib.request
from typing import Any

from ..audio import Audio
from ..errors import AudioflowError, AudioTooLargeError, DecodeError, ParameterError, UnsupportedFormatError
from .settings import ServeSettings


class Problem(Exception):
    """An error answered to the client: HTTP ``status`` and an OpenAI-style body
    ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.headers = status, message, kind, param, headers

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
    return Problem(500, message, kind="server_error")


def decode_base64(text: Any) -> bytes:
    if not isinstance(text, str) or not text:
        raise Problem(400, "audio_base64 must be a non-empty base64 string", param="audio_base64")
    if "," in text[:100] and text.startswith("data:"):  # a data: URL from a browser
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise Problem(400, "audio_base64 is not valid base64", param="audio_base64") from None


def fetch_url(url: Any, settings: ServeSettings) -> bytes:
    """The bytes at an http(s) URL, when the operator allowed URLs; loopback, private, link-local and
    reserved addresses are refused (the server must not become a way into its own network), and redirects
    are not followed (they could lead there)."""
    if not settings.allow_urls:
        raise Problem(400, "this server does not fetch URLs: upload the audio (the operator can allow URLs)",
                      param="url")
    parsed = urllib.parse.urlparse(str(url))
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise Problem(400, "url must be http(s)://host/...", param="url")
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(parsed.hostname, parsed.port or 443)}
    except socket.gaierror:
        raise Problem(400, f"cannot resolve {parsed.hostname}", param="url") from None
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if not ip.is_global or ip.is_multicast:
            raise Problem(400, f"{parsed.hostname} resolves to a non-public address; refused", param="url")

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(str(url), timeout=30) as response:
            data = response.read(settings.max_body_bytes + 1)
    except OSError as e:
        raise Problem(400, f"cannot fetch {url}: {e}", param="url") from None
    if len(data) > settings.max_body_bytes:
        raise Problem(413, f"the audio at {url} is over {settings.max_body_bytes} bytes", param="url")
    return data


def decode_audio(data: bytes, name: str, settings: ServeSettings, sr: int | None = None, mono: bool = False) -> Audio:
    """Decoded audio of an upload, after its header passed the limits (duration, rate, channels)."""
    from ..io import info, load

    if not data:
        raise Problem(400, "no audio in the request (send a file, a raw audio body, or audio_base64)", param="file")
    try:
        described = info(data)
        if described.duration > settings.max_duration:
            raise Problem(413, f"{name}: {described.duration:.0f} s of audio is over the limit of "
                               f"{settings.max_duration:.0f} s", param="file")
        if described.sample_rate > settings.max_sample_rate:
            raise Problem(422, f"{name}: sample rate {described.sample_rate} Hz is over {settings.max_sample_rate} Hz",
                          param="file")
        if described.channels > settings.max_channels:
            raise Problem(422, f"{name}: {described.channels} channels is over {settings.max_channels}", param="file")
        samples, rate = load(data, sr=sr, mono=mono)
    except AudioflowError as e:
        problem = problem_for(e)
        problem.message = f"{name}: {problem.message}" if name not in problem.message else problem.message
        raise problem from None
    return Audio(samples, rate, name)
