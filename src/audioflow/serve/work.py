"""Running requests' work in worker processes, off the event loop: admission (a queue limit and a memory
budget, answered with 503 + Retry-After), the bridge from asyncio to the process pool the pipeline uses
too, and the server's Prometheus metrics."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import threading
from typing import Any

from .inputs import Problem, Upload
from .jobs import Decode, Job, Limits, init_worker, serve_task
from .settings import ServeSettings

log = logging.getLogger("audioflow.serve")


def step(name: str, options: dict[str, Any] | None = None, **more: Any) -> tuple[str, dict[str, Any]]:
    """A pipeline step and its options, from a dict and/or keywords (None values left out: the stage's
    defaults apply)."""
    merged = {**(options or {}), **more}
    return name, {k: v for k, v in merged.items() if v is not None}


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
        self.queue_depth = Gauge("audioflow_queue_depth", "HTTP requests in progress (uploading, waiting, running)",
                                 registry=self.registry)
        self.reserved = Gauge("audioflow_memory_reserved_bytes", "memory reserved by requests in progress",
                              registry=self.registry)
        self.streams = Gauge("audioflow_streams_active", "open WebSocket streams", registry=self.registry)
        self.worker_restarts = Counter("audioflow_worker_restarts", "worker processes replaced after a crash or "
                                       "a timeout", registry=self.registry)

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class StageRunner:
    """``settings.workers`` worker processes (spawned; replaced when one dies or overruns
    ``job_timeout``), fed from the event loop without blocking it.

    ``await run(name, *args)`` runs ``jobs.JOBS[name](*args)`` in a worker and returns its value or raises
    its :class:`Problem`; ``worker=`` pins the job to one worker (a stream's state lives there).
    """

    def __init__(self, settings: ServeSettings, device: str, metrics: Metrics) -> None:
        self.settings, self.device, self.metrics = settings, device, metrics
        self.limits = Limits(settings.max_duration, settings.min_sample_rate, settings.max_sample_rate,
                             settings.max_channels, settings.max_request_bytes, settings.max_response_bytes,
                             settings.max_json_response_bytes)
        self.pending = 0  # HTTP requests in progress
        self.reserved = 0  # bytes reserved by them
        self._pool: Any = None
        self._futures: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Future]] = {}
        self._keys = itertools.count()
        self._collector: threading.Thread | None = None
        self._closing = threading.Event()
        self._start_lock = threading.Lock()
        self._loaded: dict[int, list[tuple[str, str]]] = {}

    # ---- the pool ----

    def start(self) -> None:
        """Start the workers (at app start-up; also on first use)."""
        with self._start_lock:
            if self._pool is not None:
                return
            from ..runtime import ProcessPool

            self._closing.clear()
            # spawned, not forked: the parent runs uvicorn's and CTranslate2's threads, which a forked child
            # would inherit broken
            self._pool = ProcessPool(serve_task, self.settings.workers, threads_per_worker=1,
                                     init=functools.partial(init_worker, self.device), max_deaths=1,
                                     start_method="spawn")
            self._collector = threading.Thread(target=self._collect, name="audioflow-serve-results", daemon=True)
            self._collector.start()

    def _collect(self) -> None:
        pool = self._pool
        while not self._closing.is_set():
            try:
                key, ok, value = pool.get(timeout=0.5, task_timeout=self.settings.job_timeout)
            except TimeoutError:
                continue
            except (OSError, ValueError, EOFError):  # the pool was closed under us
                break
            entry = self._futures.pop(key, None)
            if entry is None:
                continue
            loop, future = entry
            if not ok:  # the worker died (a native crash) or overran job_timeout and was killed
                self.metrics.worker_restarts.inc()
                log.error("a worker process was lost: %s", value)
            loop.call_soon_threadsafe(_settle, future, ok, value)

    async def run(self, name: str, *args: Any, worker: int | None = None, what: str | None = None) -> Any:
        """``jobs.JOBS[name](*args)`` in a worker process; ``what`` names the work in crash messages."""
        if self._pool is None:
            await asyncio.to_thread(self.start)
        future = asyncio.get_running_loop().create_future()
        key = next(self._keys)
        self._futures[key] = (asyncio.get_running_loop(), future)
        try:
            chosen = self._pool.submit(key, (name, args), worker=worker)
        except KeyError:
            self._futures.pop(key, None)
            raise Problem(500, "the stream's worker process was restarted; its state is lost",
                          kind="server_error") from None
        try:
            ok, value = await future
        finally:
            self._futures.pop(key, None)
        if not ok:
            status = 504 if "timed out" in value else 500
            raise Problem(status, f"{what or name}: the worker process running it was lost ({value}); it has been "
                                  "replaced and the server goes on", kind="server_error")
        if value[0] == "problem":
            _, status, message, kind, param = value
            raise Problem(status, message, kind, param)
        self._loaded[chosen] = value[2]
        return value[1]

    async def pick_worker(self) -> int:
        """A worker for a new stream (the one with the fewest outstanding jobs)."""
        if self._pool is None:
            await asyncio.to_thread(self.start)
        return self._pool.least_busy()

    def loaded(self) -> dict[str, list[str]]:
        """Models loaded in the workers, by name, with the devices of their copies."""
        found: dict[str, list[str]] = {}
        live = self.worker_pids()
        for worker in [w for w in self._loaded if w not in live]:  # replaced workers took their models along
            del self._loaded[worker]
        for models in self._loaded.values():
            for name, device in models:
                found.setdefault(name, []).append(device)
        return found

    def worker_pids(self) -> dict[int, int]:
        return self._pool.worker_pids() if self._pool is not None else {}

    def shutdown(self) -> None:
        self._closing.set()
        if self._collector is not None:
            self._collector.join(timeout=2.0)
            self._collector = None
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        for loop, future in list(self._futures.values()):
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, future, False, "the server is shutting down")
        self._futures.clear()

    # ---- admission ----

    def admit(self) -> None:
        """Count one more HTTP request in progress, or refuse it (503) at ``queue_limit``."""
        if self.pending >= self.settings.queue_limit:
            raise Problem(503, f"the server is busy ({self.pending} requests in progress); retry shortly",
                          kind="server_busy", headers={"Retry-After": "2"})
        self.pending += 1
        self.metrics.queue_depth.set(self.pending)

    def release(self) -> None:
        self.pending -= 1
        self.metrics.queue_depth.set(self.pending)

    @contextlib.contextmanager
    def reserve(self, cost: int):
        """Hold ``cost`` bytes of the memory budget while a request runs, or refuse it (503) now."""
        if self.reserved and self.reserved + cost > self.settings.budget_bytes:
            raise Problem(503, f"the server's memory budget is taken by requests in progress ({self.reserved >> 20}"
                               f" MiB); retry shortly", kind="server_busy", headers={"Retry-After": "5"})
        self.reserved += cost
        self.metrics.reserved.set(self.reserved)
        try:
            yield
        finally:
            self.reserved -= cost
            self.metrics.reserved.set(self.reserved)

    async def process(self, upload: Upload, decode: Decode, steps: list[tuple[str, dict[str, Any]]],
                      endpoint: str, **answer: Any) -> Any:
        """One request: its header checked and its cost estimated (worker), the budget reserved, then the
        decode, stages and answer (worker). ``answer``: :class:`Job`'s ``results``, ``audio_format``,
        ``feature`` and ``feature_output``."""
        output_audio = answer.get("audio_format") is not None or answer.get("stems_format") is not None
        described = await self.run("inspect", upload.path, upload.name, self.limits, decode, steps, output_audio,
                                   answer.get("feature") is not None, what=f"reading {upload.name}")
        job = Job(upload.path, upload.name, decode, steps, **answer)
        what = "+".join(name for name, _ in steps) or (answer.get("feature") or ("decode",))[0]
        with self.reserve(described["cost_bytes"]):
            value = await self.run("run", job, self.limits, what=f"the {what} stage")
        self.metrics.audio_seconds.labels(endpoint).inc(described["duration"])
        return value


def _settle(future: asyncio.Future, ok: bool, value: Any) -> None:
    if not future.done():
        future.set_result((ok, value))
