"""The server's own endpoints: ``/v1/health``, ``/v1/models``, ``/metrics``, the web page and ``/docs``."""

from __future__ import annotations

import asyncio
from importlib import resources
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, Response

from ... import __version__
from ..settings import key_accepted
from .common import authorize, runner_of, settings_of

router = APIRouter()


@router.get("/v1/health", tags=["server"])
async def health(request: Request) -> dict[str, Any]:
    """Liveness, open to all (load balancers' and Kubernetes' probes carry no key); the version and the load
    (queue, streams, workers, memory reserved) only with a key, where the server has keys."""
    if not key_accepted(settings_of(request), request.headers):
        return {"status": "ok"}
    runner = runner_of(request)
    return {"status": "ok", "version": __version__, "queue": runner.pending, "streams": len(request.app.state.streams),
            "workers": len(runner.worker_pids()), "memory_reserved_bytes": runner.reserved}


@router.get("/v1/models", dependencies=[Depends(authorize)], tags=["server"])
async def models(request: Request) -> dict[str, Any]:
    """Models loaded (and on which device) and the voices available."""
    from ...speech.synthesize import voices

    settings, runner = settings_of(request), runner_of(request)
    return {"device": runner.device, "whisper_model": settings.whisper_model or "tiny.en (packaged)",
            "loaded": runner.loaded(), "voices": await asyncio.to_thread(voices)}  # it asks flite: a process


@router.get("/v1/example", dependencies=[Depends(authorize)], tags=["server"],
            responses={200: {"content": {"audio/wav": {}}}})
async def example(request: Request) -> Response:
    """A short call between two synthesized voices (16 kHz WAV), for trying the stages without an upload; made
    once by a worker, then kept."""
    state = request.app.state
    if getattr(state, "example_wav", None) is None:
        state.example_wav = await runner_of(request).run("example", what="the example clip")
    return Response(state.example_wav, media_type="audio/wav")


@router.get("/metrics", dependencies=[Depends(authorize)], tags=["server"],
            responses={200: {"content": {"text/plain": {}}}})
async def prometheus(request: Request) -> Response:
    """Prometheus metrics: requests, latencies, audio seconds processed, queue depth, memory reserved, open
    streams, worker restarts."""
    return Response(request.app.state.metrics.render(), media_type="text/plain; version=0.0.4")


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def page() -> HTMLResponse:
    return HTMLResponse(resources.files("audioflow.serve").joinpath("static/index.html").read_text())


def add_docs(app: FastAPI) -> None:
    """``/docs``: Swagger UI from the ``swagger-ui-bundle`` package's files, served here (no CDN: the page
    works offline and loads nothing from elsewhere); without that package, a page that links the spec."""
    try:
        import swagger_ui_bundle
    except ImportError:
        swagger_ui_bundle = None
    if swagger_ui_bundle is not None:
        from fastapi.openapi.docs import get_swagger_ui_html
        from fastapi.staticfiles import StaticFiles

        app.mount("/docs-assets", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-assets")

        @app.get("/docs", include_in_schema=False)
        async def docs() -> HTMLResponse:
            return get_swagger_ui_html(openapi_url="/openapi.json", title="audioflow API",
                                       swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                       swagger_css_url="/docs-assets/swagger-ui.css",
                                       swagger_favicon_url="/docs-assets/favicon-32x32.png")
    else:
        @app.get("/docs", include_in_schema=False)
        async def docs() -> HTMLResponse:
            return HTMLResponse("<!doctype html><title>audioflow API</title><p>The OpenAPI spec: "
                                "<a href='/openapi.json'>/openapi.json</a> (pip install swagger-ui-bundle for "
                                "the interactive page).</p>")
