"""What an operator sets when starting the server: where it listens, who may call it, and its limits."""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ParameterError


@dataclass
class ServeSettings:
    """Server settings.

    Args:
        host, port: where uvicorn listens. Without API keys only 127.0.0.1 (or localhost) is allowed.
        api_keys: accepted keys (``Authorization: Bearer KEY`` or ``X-API-Key: KEY``); empty: no auth.
        workers: threads running the CPU-heavy work (decode, models) off the event loop.
        queue_limit: requests running or waiting at once; beyond it the answer is 503 with Retry-After.
        max_body_bytes: largest request body, bytes.
        max_duration: longest audio accepted, seconds.
        max_sample_rate: highest sample rate accepted, Hz. max_channels: most channels accepted.
        allow_urls: fetch audio from http(s) URLs given in JSON bodies (never loopback/private addresses).
        ws_max_message_bytes: largest WebSocket message, bytes.
        ws_max_stream_seconds: longest audio one stream may send, seconds.
        max_streams_per_client: concurrent WebSocket streams per client address.
        device: 'cpu', 'cuda' or 'auto' for the models.
        whisper_model: the Whisper model every transcription uses: a CTranslate2 directory or a
            faster-whisper name ('small', 'large-v3'; downloaded when online); None: the packaged tiny.en.
            Clients cannot choose it (the OpenAI ``model`` field is accepted and ignored).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    api_keys: list[str] = field(default_factory=list)
    workers: int = 2
    queue_limit: int = 16
    max_body_bytes: int = 100 * 1024 * 1024
    max_duration: float = 3 * 3600.0
    max_sample_rate: int = 192000
    max_channels: int = 8
    allow_urls: bool = False
    ws_max_message_bytes: int = 1024 * 1024
    ws_max_stream_seconds: float = 3600.0
    max_streams_per_client: int = 4
    device: str = "auto"
    whisper_model: str | None = None

    def check(self) -> None:
        if not self.api_keys and self.host not in ("127.0.0.1", "localhost", "::1"):
            raise ParameterError(f"refusing to listen on {self.host} without an API key: give --api-key-file, "
                                 "or bind 127.0.0.1")
        if self.workers < 1 or self.queue_limit < 1:
            raise ParameterError("workers and queue_limit must be >= 1")


def key_accepted(settings: ServeSettings, headers: Mapping[str, str], query_key: str | None = None) -> bool:
    """Whether a request may pass: no keys configured, or a configured key in ``Authorization: Bearer``,
    ``X-API-Key`` or (WebSockets from browsers, which cannot set headers) ``query_key``."""
    if not settings.api_keys:
        return True
    given = headers.get("x-api-key") or query_key or ""
    bearer = headers.get("authorization", "")
    if bearer.lower().startswith("bearer "):
        given = bearer[7:].strip()
    # compare with every key, in constant time, so timing says nothing about which bytes matched
    return any(hmac.compare_digest(given.encode(), key.encode()) for key in settings.api_keys)


def read_api_keys(path: str | os.PathLike[str]) -> list[str]:
    """Keys from a file, one per line (blank lines and # comments skipped)."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as e:
        raise ParameterError(f"cannot read the API key file {path}: {e.strerror or e}") from None
    keys = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    if not keys:
        raise ParameterError(f"the API key file {path} holds no key")
    if any(len(k) < 16 for k in keys):
        raise ParameterError(f"API keys in {path} must be at least 16 characters")
    return keys
