"""The server: the pipeline's stages over HTTP (audioflow's endpoints and OpenAI-compatible ones), a
real-time WebSocket stream and a web page. ``audioflow serve`` runs it; ``create_app`` gives the FastAPI
application (for tests, or to mount in your own app)."""

from .settings import ServeSettings, read_api_keys


def create_app(settings: ServeSettings | None = None):
    """The FastAPI application (see :mod:`audioflow.serve.app`)."""
    from .app import create_app as build

    return build(settings)


def serve(settings: ServeSettings) -> None:
    """Run the server with uvicorn until interrupted."""
    from .app import serve as run

    run(settings)


__all__ = ["ServeSettings", "create_app", "read_api_keys", "serve"]
