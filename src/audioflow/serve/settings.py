"""What an operator sets when starting the server: where it listens, who may call it, and its limits."""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ParameterError


@dataclass
class ServeSettings:
    """Server settings. Every limit has a default that keeps one request on a small machine under about
    1.5 GB (docs/api.md lists them with what each refusal looks like).

    Args:
        host, port: where uvicorn listens. Without API keys only 127.0.0.1 (or localhost) is allowed.
        api_keys: accepted keys (``Authorization: Bearer KEY`` or ``X-API-Key: KEY``; WebSockets also in
            their first message); empty: no auth.
        workers: worker processes running decodes, models and encoders (a crash there costs one request,
            and the worker is replaced).
        queue_limit: HTTP requests in progress at once (uploading, waiting or running); beyond it the
            answer is 503 with Retry-After, before the body is read. A request without an accepted key is
            refused (401) before it is counted or its body read.
        key_concurrency: HTTP requests in progress at once per API key (None: only ``queue_limit``); beyond
            it: 429 with Retry-After, before the body is read.
        key_rate, key_burst: requests per second each API key may make on average, and how many at once
            after a quiet spell (a token bucket); beyond it: 429 with Retry-After. None: no rate limit.
        header_timeout: seconds a connection may take to send a request's headers (from its opening, or
            the end of its last response) before it is closed.
        body_timeout: seconds a request's body may pause between two chunks before the request is
            refused (408).
        max_body_bytes: largest request body, bytes (spooled to disk as it arrives, never held whole).
        max_json_bytes: largest JSON body (``audio_base64``), bytes: JSON is parsed in memory.
        max_duration: longest audio one request processes, seconds (longer inputs go to ``POST /v1/jobs``,
            which processes them in chunks).
        min_sample_rate, max_sample_rate: sample rates accepted, Hz.
        max_channels: most channels accepted.
        max_request_bytes: the most memory one request may need, bytes, estimated from the header before
            anything is decoded (duration x rate x channels x what its stages hold); over it: 413.
        memory_budget_bytes: the most that all requests in progress may need together, bytes (None:
            ``workers`` x ``max_request_bytes``); a request that does not fit now gets 503 + Retry-After.
        max_response_bytes: largest answer, bytes (413 with a hint: a compressed format, npy, a shorter clip).
        max_json_response_bytes: largest array sent as JSON text (features), bytes; ``output=npy`` sends the
            same values in about a third of the bytes, up to ``max_response_bytes``.
        job_timeout: seconds one job may run in a worker before the worker is killed and replaced (504).
        allow_urls: fetch audio from http(s) URLs given in JSON bodies (never loopback/private addresses).
        url_timeout: seconds a whole URL download may take (connect, headers and body together).
        allowed_hosts: Host header values accepted (a name, or name:port); None: the loopback names when
            bound to loopback (DNS-rebinding protection), anything when bound elsewhere. ``["*"]``: any.
        allowed_origins: browser origins (``https://app.example.com``) allowed besides the server's own
            page, for HTTP and the WebSocket; ``["*"]``: any.
        jobs_dir: where jobs (``POST /v1/jobs``) keep their state, inputs and results, surviving restarts
            (None: ``$XDG_STATE_HOME/audioflow/jobs``).
        max_jobs: jobs waiting or running at once (beyond: 429).
        max_job_body_bytes: largest upload for a job, bytes (spooled to disk).
        max_job_duration: longest audio a job accepts, seconds.
        job_chunk_duration: seconds of audio a job processes at a time (memory bounded by a chunk;
            ``audioflow process`` uses the same default, so a job's result equals its).
        ws_max_message_bytes: largest WebSocket message, bytes.
        ws_max_stream_seconds: longest audio one stream may send, seconds.
        ws_idle_timeout: seconds a stream may stay silent (no message) before it is closed (4408).
        ws_max_backlog_seconds: seconds of a stream's audio that may wait for its worker (a client sending
            faster than it is processed): past half of it a ``slow_down`` event, past all of it close 1008.
        max_streams_per_client: concurrent WebSocket streams per API key (per client address on a server
            without keys).
        max_streams: concurrent WebSocket streams in all.
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
    key_concurrency: int | None = None
    key_rate: float | None = None
    key_burst: int = 10
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_body_bytes: int = 100 * 1024 * 1024
    max_json_bytes: int = 16 * 1024 * 1024
    max_duration: float = 1800.0
    min_sample_rate: int = 4000
    max_sample_rate: int = 192000
    max_channels: int = 8
    max_request_bytes: int = 1024 * 1024 * 1024
    memory_budget_bytes: int | None = None
    max_response_bytes: int = 256 * 1024 * 1024
    max_json_response_bytes: int = 16 * 1024 * 1024
    job_timeout: float = 1800.0
    allow_urls: bool = False
    url_timeout: float = 30.0
    allowed_hosts: list[str] | None = None
    allowed_origins: list[str] = field(default_factory=list)
    jobs_dir: str | None = None
    max_jobs: int = 32
    max_job_body_bytes: int = 2 * 1024 * 1024 * 1024
    max_job_duration: float = 24 * 3600.0
    job_chunk_duration: float = 600.0
    ws_max_message_bytes: int = 1024 * 1024
    ws_max_stream_seconds: float = 3600.0
    ws_idle_timeout: float = 30.0
    ws_max_backlog_seconds: float = 300.0
    max_streams_per_client: int = 4
    max_streams: int = 32
    device: str = "auto"
    whisper_model: str | None = None

    def check(self) -> None:
        if not self.api_keys and self.host not in LOOPBACK_NAMES:
            raise ParameterError(f"refusing to listen on {self.host} without an API key: give --api-key-file, "
                                 "or bind 127.0.0.1")
        if self.workers < 1 or self.queue_limit < 1:
            raise ParameterError("workers and queue_limit must be >= 1")
        if self.key_concurrency is not None and self.key_concurrency < 1:
            raise ParameterError("key_concurrency must be >= 1 (or None: no per-key limit)")
        if (self.key_rate is not None and self.key_rate <= 0) or self.key_burst < 1:
            raise ParameterError("key_rate must be > 0 requests per second (or None) and key_burst >= 1")
        if self.max_jobs < 1 or self.job_chunk_duration <= 0:
            raise ParameterError("max_jobs must be >= 1 and job_chunk_duration > 0 seconds")
        if self.header_timeout <= 0 or self.body_timeout <= 0:
            raise ParameterError("header_timeout and body_timeout are seconds > 0")
        if not 0 < self.min_sample_rate <= self.max_sample_rate:
            raise ParameterError("min_sample_rate must be positive and at most max_sample_rate")

    def body_limit(self, path: str) -> int:
        """The largest request body for ``path``, bytes (a job's upload may be larger than a request's)."""
        return self.max_job_body_bytes if path == "/v1/jobs" else self.max_body_bytes

    @property
    def budget_bytes(self) -> int:
        return self.memory_budget_bytes or self.workers * self.max_request_bytes

    def host_allowed(self, host_header: str) -> bool:
        """Whether a request's Host header names this server (DNS-rebinding protection: a page on
        evil.example whose name resolves to 127.0.0.1 sends ``Host: evil.example``)."""
        allowed = self.allowed_hosts
        if allowed is None:
            if self.host not in LOOPBACK_NAMES:
                return True
            allowed = list(LOOPBACK_NAMES)
        if "*" in allowed:
            return True
        host = host_header.strip().lower()
        return host in allowed or host_name(host) in allowed

    def origin_allowed(self, origin: str | None, host_header: str) -> bool:
        """Whether a browser ``Origin`` may call: none (not a browser), the server's own page (same host
        and port), or one the operator allowed."""
        if origin is None:
            return True
        if "*" in self.allowed_origins or origin in self.allowed_origins:
            return True
        _, _, rest = origin.partition("://")
        return bool(rest) and rest.lower() == host_header.strip().lower()


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def host_name(host: str) -> str:
    """The name in a Host header value, without the port: ``[::1]:8000`` -> ``::1``."""
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def matching_key(settings: ServeSettings, headers: Mapping[str, str], given_key: str | None = None) -> str | None:
    """The configured key a request carries in ``Authorization: Bearer``, ``X-API-Key`` or ``given_key`` (a
    WebSocket's first message: browsers cannot set headers there), or None."""
    given = headers.get("x-api-key") or given_key or ""
    bearer = headers.get("authorization", "")
    if bearer.lower().startswith("bearer "):
        given = bearer[7:].strip()
    found = None
    # compare with every key, in constant time, so timing says nothing about which bytes matched
    for key in settings.api_keys:
        if hmac.compare_digest(given.encode(), key.encode()):
            found = key
    return found


def owner_of(key: str | None) -> str:
    """Who a key is, for what belongs to it (jobs, streams): a hash of it ('' for none), never the key."""
    return hashlib.sha256(key.encode()).hexdigest()[:32] if key else ""


def key_accepted(settings: ServeSettings, headers: Mapping[str, str], given_key: str | None = None) -> bool:
    """Whether a request may pass: no keys configured, or a configured key in a header or ``given_key``
    (:func:`matching_key`; a key in the URL would end up in access logs)."""
    return not settings.api_keys or matching_key(settings, headers, given_key) is not None


# query parameters that carry credentials, by name without case or separators ('api_key', 'X-Api-Key', ...)
CREDENTIAL_PARAMETERS = frozenset({"apikey", "xapikey", "key", "token", "accesstoken", "authtoken", "auth",
                                   "authorization", "bearer", "secret", "password", "passwd"})


def credential_in_url(settings: ServeSettings, path: str, query: str) -> str | None:
    """What in a request's URL looks like a credential: the name of a query parameter called like one
    (after percent-decoding: ``api_%6Bey`` is ``api_key``), or 'the URL' when a configured key appears
    anywhere in it; None when nothing does. Keys belong in headers: URLs are written to access logs,
    proxies' logs and browser history."""
    from urllib.parse import parse_qsl, unquote

    for name, _ in parse_qsl(query, keep_blank_values=True):
        if "".join(c for c in name.lower() if c.isalnum()) in CREDENTIAL_PARAMETERS:
            return name
    url = unquote(path) + "?" + unquote(query)
    if any(key in url for key in settings.api_keys):
        return "the URL"
    return None


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
