"""Running the pipeline's stages for requests: off the event loop, in a bounded pool of threads, with a
queue limit that answers 503 instead of piling work up; and the server's Prometheus metrics."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..audio import Audio
from ..models import ModelManager
from .inputs import Problem


def step(name: str, **options: Any) -> tuple[str, dict[str, Any]]:
    """A pipeline step and its options for :meth:`StageRunner.run_steps` (None options left out: the
    stage's defaults apply)."""
    return name, {k: v for k, v in options.items() if v is not None}


class Metrics:
    """Prometheus metrics of one app (its own registry, so several apps can live in one process)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("audioflow_requests", "HTTP requests answered", ["endpoint", "status"],
                                registry=self.registry)
        self.latency = Histogram("audioflow_request_seconds", "time to answer a request, seconds", ["endpoint"],
                                 registry=self.registry,
                                 buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
        self.audio_seconds = Counter("audioflow_audio_seconds", "seconds of audio processed", ["endpoint"],
                                     registry=self.registry)
        self.queue_depth = Gauge("audioflow_queue_depth", "requests running or waiting for a worker",
                                 registry=self.registry)
        self.streams = Gauge("audioflow_streams_active", "open WebSocket streams", registry=self.registry)

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class StageRunner:
    """A pool of ``workers`` threads; each keeps its own model manager (stateful models such as a streaming
    VAD are never shared between threads; each model loads once per thread)."""

    def __init__(self, workers: int, queue_limit: int, device: str, metrics: Metrics) -> None:
        self.workers = workers
        self.executor: ThreadPoolExecutor | None = None  # started on first use, again after a shutdown
        self.queue_limit, self.device, self.metrics = queue_limit, device, metrics
        self.pending = 0
        self._local = threading.local()
        self._managers: list[ModelManager] = []
        self._lock = threading.Lock()

    def models(self) -> ModelManager:
        """This thread's model manager."""
        if not hasattr(self._local, "models"):
            self._local.models = ModelManager(self.device)
            with self._lock:
                self._managers.append(self._local.models)
        return self._local.models

    def loaded(self) -> dict[str, list[str]]:
        """Models loaded, by name, with the devices of their copies."""
        found: dict[str, list[str]] = {}
        for manager in list(self._managers):
            for name, device in manager.loaded().items():
                found.setdefault(name, []).append(device)
        return found

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` in the pool; 503 with Retry-After when ``queue_limit`` requests are already in."""
        if self.pending >= self.queue_limit:
            raise Problem(503, f"the server is busy ({self.pending} requests in progress); retry shortly",
                          kind="server_busy", headers={"Retry-After": "2"})
        self.pending += 1
        self.metrics.queue_depth.set(self.pending)
        if self.executor is None:
            self.executor = ThreadPoolExecutor(self.workers, thread_name_prefix="audioflow-serve")
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)
        finally:
            self.pending -= 1
            self.metrics.queue_depth.set(self.pending)

    def run_steps(self, audio: Audio, steps: list[tuple[str, dict[str, Any]]],
                  known: dict[str, Any] | None = None) -> tuple[Audio, Any]:
        """The pipeline's stages for ``steps`` (``(name, options)`` pairs) over one request's audio, their
        models from this thread's manager (loaded once; building the stages per request costs nothing);
        ``known`` results are given to the stages as if earlier steps had made them (e.g. the stream's VAD
        segments). Runs in a pool thread."""
        from ..errors import AudioflowError
        from ..pipeline.stage import Annotations, build_steps
        from .inputs import problem_for

        models = self.models()
        try:
            stages = build_steps(steps)
            for stage in stages:
                stage.setup(models)
            annotations = Annotations(audio.source or "upload", "upload", None)
            annotations.results.update(known or {})
            for stage in stages:
                audio, annotations = stage(audio, annotations)
        except AudioflowError as e:
            raise problem_for(e) from None
        return audio, annotations

    def shutdown(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
            self.executor = None
