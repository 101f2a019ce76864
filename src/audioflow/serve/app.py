"""The FastAPI application: audioflow's own endpoints (``/v1/transcribe``, ``/v1/diarize``, ...), the
OpenAI-compatible ones (``/v1/audio/transcriptions``, ``/v1/audio/translations``, ``/v1/audio/speech``),
the WebSocket stream, health, models, metrics and the web page. Every endpoint runs the pipeline's
stages (or the speech and feature functions they wrap), so the server computes what a batch run does.

This module wires the application together: state, the worker processes, error answers, the guard
middleware and the routers of ``routes/`` (one module per concern)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..errors import AudioflowError
from .guard import Guard
from .inputs import Problem, Spool, problem_for
from .responses import SafeJSONResponse
from .routes import ROUTERS
from .routes.server import add_docs
from .settings import ServeSettings
from .work import Metrics, StageRunner


def create_app(settings: ServeSettings | None = None) -> FastAPI:
    """The application for ``settings`` (defaults: 127.0.0.1, no key, 2 worker processes)."""
    settings = settings or ServeSettings()
    settings.check()
    device = settings.device
    if device == "auto":
        from ..runtime import device_name

        device = device_name("auto")
    metrics = Metrics()
    runner = StageRunner(settings, device, metrics)
    spool = Spool()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        await asyncio.to_thread(runner.start)
        yield
        await asyncio.to_thread(runner.shutdown)
        spool.close()

    app = FastAPI(title="audioflow", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  default_response_class=SafeJSONResponse,
                  description="Speech and audio processing: the stages of `audioflow process` over HTTP and "
                              "WebSocket, with OpenAI-compatible audio endpoints.")
    app.state.settings, app.state.runner, app.state.metrics = settings, runner, metrics
    app.state.streams = {}
    app.state.spool = spool
    _answer_errors(app)
    app.add_middleware(Guard, settings=settings, runner=runner, metrics=metrics)
    add_docs(app)

    from .stream import register_stream

    register_stream(app, settings, runner, metrics)
    for router in ROUTERS:
        app.include_router(router)
    return app


def _answer_errors(app: FastAPI) -> None:
    """Every error as a JSON problem (status, message, kind, param): ours, the library's, HTTP's."""

    @app.exception_handler(Problem)
    async def answer_problem(request: Request, problem: Problem) -> JSONResponse:
        return JSONResponse(problem.body(), problem.status, headers=problem.headers)

    @app.exception_handler(AudioflowError)
    async def answer_library_error(request: Request, error: AudioflowError) -> JSONResponse:
        problem = problem_for(error)
        return JSONResponse(problem.body(), problem.status)

    @app.exception_handler(RequestValidationError)
    async def answer_invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        problem = validation_problem(error.errors(), request.url.path)
        return JSONResponse(problem.body(), problem.status)

    @app.exception_handler(StarletteHTTPException)
    async def answer_http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        problem = Problem(error.status_code, str(error.detail))
        return JSONResponse(problem.body(), problem.status, headers=getattr(error, "headers", None))


def validation_problem(errors: Sequence[Any], path: str) -> Problem:
    """FastAPI's validation errors (``[{"loc": ("query", "threshold"), "msg": ...}]``) as our error body, the
    OpenAI shape: ``{"error": {"message", "type", "param", "code"}}`` with the first parameter named. The
    OpenAI-compatible routes answer 400 as OpenAI does; ours keep FastAPI's 422."""
    parts, param = [], None
    for error in errors:
        loc = [str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path", "header")]
        name = ".".join(loc) or "request"
        param = param or (loc[0] if loc else None)
        parts.append(f"{name}: {error.get('msg', 'invalid')}")
    status = 400 if path.startswith("/v1/audio/") else 422
    return Problem(status, "; ".join(parts) or "invalid request", param=param)


class RedactKeys(logging.Filter):
    """Keys in URLs out of the logs: the server refuses ``?api_key=``, but uvicorn logs the request line
    of the refused attempt (and of any ``key``/``token`` query) before the app sees it."""

    pattern = re.compile(r"((?:api_key|apikey|key|token|access_token)=)[^&\s\"']+", re.IGNORECASE)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.pattern.sub(r"\1REDACTED", message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


def serve(settings: ServeSettings) -> None:
    """Run the server with uvicorn until interrupted."""
    import uvicorn

    app = create_app(settings)
    for name in ("uvicorn.access", "uvicorn.error"):
        logging.getLogger(name).addFilter(RedactKeys())
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info",
                ws_max_size=settings.ws_max_message_bytes)


__all__ = ["RedactKeys", "create_app", "serve"]
