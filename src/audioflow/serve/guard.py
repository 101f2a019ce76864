"""The ASGI middleware in front of every request: Host and Origin checks, credentials refused in URLs, the
API key checked and per-key limits applied before anything else is spent, body limits and a body timeout,
admission against the queue limit before a body is read, security headers, and the request metrics."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import Counter
from typing import Any

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException

from .inputs import Problem
from .settings import ServeSettings, credential_in_url, matching_key
from .work import Metrics, StageRunner

SECURITY_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer"), (b"cross-origin-opener-policy", b"same-origin"),
                    (b"cross-origin-resource-policy", b"same-origin"),
                    (b"content-security-policy", b"default-src 'self'; script-src 'self' 'unsafe-inline'; "
                     b"style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; media-src 'self' blob:; "
                     b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")]

CLOSE = {"Connection": "close"}  # on a refusal sent before the body was all read: the rest is never read


class KeyLimits:
    """Per-API-key admission: at most ``key_concurrency`` requests in progress and a token bucket of
    ``key_rate`` requests per second (``key_burst`` deep); over either: 429 with Retry-After."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.in_flight: Counter[str] = Counter()
        self.buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when counted)

    def admit(self, key: str) -> None:
        settings = self.settings
        if settings.key_concurrency is not None and self.in_flight[key] >= settings.key_concurrency:
            raise Problem(429, f"this API key has {self.in_flight[key]} requests in progress, the most the server "
                          "allows one key; retry when one ends", kind="rate_limit_error", headers={"Retry-After": "1"})
        if settings.key_rate is not None:
            now = time.monotonic()
            tokens, then = self.buckets.get(key, (float(settings.key_burst), now))
            tokens = min(float(settings.key_burst), tokens + (now - then) * settings.key_rate)
            if tokens < 1.0:
                wait = math.ceil((1.0 - tokens) / settings.key_rate)
                raise Problem(429, f"this API key is over its rate of {settings.key_rate:g} requests per second",
                              kind="rate_limit_error", headers={"Retry-After": str(wait)})
            self.buckets[key] = (tokens - 1.0, now)
        self.in_flight[key] += 1

    def release(self, key: str) -> None:
        self.in_flight[key] -= 1
        if not self.in_flight[key]:
            del self.in_flight[key]


def needs_key(path: str) -> bool:
    """Whether a path is behind the API key: the API and the metrics; the page, its assets, the schema and
    ``/v1/health`` (probes carry no key) are open."""
    return (path.startswith("/v1/") and path != "/v1/health") or path == "/metrics"


class Guard:
    """ASGI middleware in front of everything: the Host header must name this server and a browser's
    Origin must be its own page or allowed (DNS rebinding, cross-site form posts); a credential in the URL
    is refused (400) and a missing or wrong API key (401) before the request is admitted or a byte of its
    body read, so keyless clients cost a header parse; per-key limits (429); a declared body over the
    limit is refused, a streamed one as soon as it passes it, and one that pauses over ``body_timeout``
    (408); POSTs are admitted against the queue limit before their bodies are read (503); security
    headers on every answer; metrics. A refusal sent before the body was read closes the connection,
    so the rest of that body is never read."""

    def __init__(self, app: Any, settings: ServeSettings, runner: StageRunner, metrics: Metrics) -> None:
        self.app, self.settings, self.runner, self.metrics = app, settings, runner, metrics
        self.keys = KeyLimits(settings)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            return await self._websocket(scope, receive, send)
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        origin = headers.get("origin")
        started, status = time.perf_counter(), 500

        async def guarded_send(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        admitted, key = False, None
        try:
            if not self.settings.host_allowed(host):
                raise Problem(421, f"host {host!r} is not this server's name (the operator can allow it)")
            if not self.settings.origin_allowed(origin, host):
                raise Problem(403, "requests from this origin are not allowed (the operator can allow it)")
            self._refuse_credentials_in_url(scope)
            if self.settings.api_keys and needs_key(scope["path"]):
                found = matching_key(self.settings, headers)
                if found is None:
                    raise Problem(401, "missing or wrong API key (Authorization: Bearer KEY, or X-API-Key)",
                                  kind="authentication_error", headers={"WWW-Authenticate": "Bearer"})
                self.keys.admit(found)
                key = found
            limit = self.settings.body_limit(scope["path"])
            declared = headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > limit:
                raise Problem(413, f"request body over {limit} bytes")
            if scope["method"] == "POST" and scope["path"].startswith("/v1/"):
                self.runner.admit()
                admitted = True
            await self.app(scope, self._limited(receive, limit), guarded_send)
        except Problem as problem:
            await send_problem(guarded_send, problem, close=True)
        finally:
            if admitted:
                self.runner.release()
            if key is not None:
                self.keys.release(key)
            route = getattr(scope.get("route"), "path", "other")
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)

    async def _websocket(self, scope: Any, receive: Any, send: Any) -> None:
        """A WebSocket with a credential in its URL is refused before the handshake (HTTP 403 to the
        client); its key is checked in the stream's first message or headers."""
        try:
            self._refuse_credentials_in_url(scope)
        except Problem:
            await send({"type": "websocket.close", "code": 4401,
                        "reason": "send the API key in a header or the first message, never in the URL"})
            return
        await self.app(scope, receive, send)

    def _refuse_credentials_in_url(self, scope: Any) -> None:
        found = credential_in_url(self.settings, scope["path"], scope.get("query_string", b"").decode("latin-1"))
        if found is not None:
            raise Problem(400, f"{found} looks like a credential: send the API key in a header (Authorization: "
                          "Bearer KEY, or X-API-Key), never in the URL, which is written to logs",
                          param=None if found == "the URL" else found)

    def _limited(self, receive: Any, limit: int) -> Any:
        received, timeout = 0, self.settings.body_timeout
        body_done = False

        async def limited() -> Any:
            nonlocal received, body_done
            if body_done:  # the app waits for the client to leave: no deadline on that
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), timeout)
            except asyncio.TimeoutError:
                raise StarletteHTTPException(408, f"the request body paused for over {timeout:g} s",
                                             headers=CLOSE) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if received > limit:  # a chunked body, without a Content-Length to refuse up front
                    raise StarletteHTTPException(413, f"request body over {limit} bytes", headers=CLOSE)
            return message

        return limited


async def send_problem(send: Any, problem: Problem, close: bool = False) -> None:
    """``problem`` as a JSON answer; ``close``: and the connection closed after it (a body not read)."""
    body = json.dumps(problem.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    headers += [(k.lower().encode(), v.encode()) for k, v in (problem.headers or {}).items()]
    await send({"type": "http.response.start", "status": problem.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
