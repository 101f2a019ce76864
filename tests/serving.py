"""Servers for the tests: the app called by its loopback name, and uvicorn on 127.0.0.1 in a thread."""

from __future__ import annotations

import socket
import threading
import time

from fastapi.testclient import TestClient

from audioflow.serve import ServeSettings, create_app
from audioflow.serve.app import uvicorn_config

LOCAL = "http://127.0.0.1"  # the loopback server's own name: other Host headers are refused (DNS rebinding)
WS = "ws://127.0.0.1/v1/stream"


def local(app) -> TestClient:
    """A test client that calls the app by its loopback name."""
    return TestClient(app, base_url=LOCAL)


class LiveServer:
    """uvicorn on 127.0.0.1 and a free port, in a thread of this process."""

    def __init__(self, settings: ServeSettings, log_level: str = "warning") -> None:
        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            settings.port = s.getsockname()[1]
        self.settings = settings
        self.url = f"http://127.0.0.1:{settings.port}"
        self.app = create_app(settings)
        self.server = uvicorn.Server(uvicorn_config(settings, self.app, log_level=log_level))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)
