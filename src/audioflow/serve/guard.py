"""The ASGI middleware in front of every request: Host and Origin checks, body limits, admission against
the queue limit before a body is read, security headers, and the request metrics."""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.exceptions import HTTPException as StarletteHTTPException

from .inputs import Problem
from .settings import ServeSettings
from .work import Metrics, StageRunner

SECURITY_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer"), (b"cross-origin-opener-policy", b"same-origin"),
                    (b"cross-origin-resource-policy", b"same-origin"),
                    (b"content-security-policy", b"default-src 'self'; script-src 'self' 'unsafe-inline'; "
                     b"style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; media-src 'self' blob:; "
                     b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")]

class Guard:
    """ASGI middleware in front of everything: the Host header must name this server and a browser's
    Origin must be its own page or allowed (DNS rebinding, cross-site form posts); a declared body over
    the limit is refused, and a streamed one as soon as it passes it; POSTs are admitted against the
    queue limit before their bodies are read (503); security headers on every answer; metrics."""

    def __init__(self, app: Any, settings: ServeSettings, runner: StageRunner, metrics: Metrics) -> None:
        self.app, self.settings, self.runner, self.metrics = app, settings, runner, metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        host = headers.get(b"host", b"").decode("latin-1")
        origin = headers.get(b"origin")
        started, status = time.perf_counter(), 500

        async def guarded_send(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        admitted = False
        try:
            if not self.settings.host_allowed(host):
                raise Problem(421, f"host {host!r} is not this server's name (the operator can allow it)")
            if not self.settings.origin_allowed(origin.decode("latin-1") if origin else None, host):
                raise Problem(403, "requests from this origin are not allowed (the operator can allow it)")
            declared = headers.get(b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.settings.max_body_bytes:
                raise Problem(413, f"request body over {self.settings.max_body_bytes} bytes")
            if scope["method"] == "POST" and scope["path"].startswith("/v1/"):
                self.runner.admit()
                admitted = True
            await self.app(scope, self._limited(receive), guarded_send)
        except Problem as problem:
            await send_problem(guarded_send, problem)
        finally:
            if admitted:
                self.runner.release()
            route = getattr(scope.get("route"), "path", "other")
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)

    def _limited(self, receive: Any) -> Any:
        received, limit = 0, self.settings.max_body_bytes

        async def limited() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:  # a chunked body, without a Content-Length to refuse up front
                    raise StarletteHTTPException(413, f"request body over {limit} bytes")
            return message

        return limited


async def send_problem(send: Any, problem: Problem) -> None:
    body = json.dumps(problem.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in (problem.headers or {}).items()]
    await send({"type": "http.response.start", "status": problem.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
