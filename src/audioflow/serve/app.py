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
from .long_jobs import JobBoard
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

    jobs = JobBoard(settings, device)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        await asyncio.to_thread(runner.start)
        jobs.start()
        yield
        await asyncio.to_thread(jobs.shutdown)
        await asyncio.to_thread(runner.shutdown)
        spool.close()

    app = FastAPI(title="audioflow", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  default_response_class=SafeJSONResponse,
                  description="Speech and audio processing: the stages of `audioflow process` over HTTP and "
                              "WebSocket, with OpenAI-compatible audio endpoints.")
    redact_logs(settings.api_keys)
    app.state.settings, app.state.runner, app.state.metrics = settings, runner, metrics
    app.state.streams = {}
    app.state.spool = spool
    app.state.jobs = jobs
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
    """No credential in the logs: every query string value and every configured key in a log line is
    replaced by ``…`` (names stay: ``/v1/vad?threshold=…``). uvicorn writes a request's line, query included,
    before the app sees it, and a refused ``?api_key=`` would otherwise be logged in clear. uvicorn's access
    records keep their five arguments (its formatter unpacks them); other records are rewritten whole."""

    query_value = re.compile(r"([?&][^=&\s\"'#?]*)=[^&\s\"'#]*")

    def __init__(self, keys: Sequence[str] = ()) -> None:
        super().__init__()
        self.keys = [k for k in keys if k]

    def clean(self, text: str) -> str:
        text = self.query_value.sub("\\1=…", text)
        for key in self.keys:
            text = text.replace(key, "…")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
            record.args = tuple(self.clean(a) if isinstance(a, str) else a for a in record.args)
            return True
        message = record.getMessage()
        cleaned = self.clean(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


LOGGERS = ("uvicorn.access", "uvicorn.error", "uvicorn", "audioflow")


def redact_logs(keys: Sequence[str]) -> None:
    """Put one :class:`RedactKeys` for ``keys`` on the server's loggers (replacing an earlier one)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, RedactKeys)]:
            logger.removeFilter(old)
        logger.addFilter(RedactKeys(keys))


def uvicorn_config(settings: ServeSettings, app: FastAPI | None = None, log_level: str = "info") -> Any:
    """uvicorn's configuration for the app of ``settings``: its address, the WebSocket message limit and
    the HTTP protocol with a deadline for request headers (:mod:`.connections`)."""
    import uvicorn

    from .connections import protocol_with_header_deadline

    return uvicorn.Config(app or create_app(settings), host=settings.host, port=settings.port, log_level=log_level,
                          ws_max_size=settings.ws_max_message_bytes,
                          http=protocol_with_header_deadline(settings.header_timeout))


def serve(settings: ServeSettings) -> None:
    """Run the server with uvicorn until interrupted."""
    import uvicorn

    uvicorn.Server(uvicorn_config(settings)).run()


__all__ = ["RedactKeys", "create_app", "redact_logs", "serve", "uvicorn_config"]
