"""Worker processes for the training loader, the batch pipeline and the server: each has its own task queue (so
the tasks of a worker that dies are known and handed to its replacement) and its own result pipe
(tensors travel in shared memory), and the pool can grow while running. A task may be pinned to one
worker (the server keeps a stream's model state in one process).

Results come back on one pipe per worker, written synchronously, not on one shared queue: a shared
queue's writers take a lock shared by all of them, and a worker killed while its feeder thread held it
(a native crash right after a result) would silence every other worker for good."""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import queue
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from .extras import installed

log = logging.getLogger("audioflow.runtime")

_POLL_S = 0.2
_READY = "__worker_ready__"

# Native libraries whose thread pools a forked child inherits broken: a worker forked from a parent that
# has run them hangs at its first call (CTranslate2's OpenMP pool, found when a test transcribed in the
# parent and then ran a pipeline). When the parent has loaded one, workers are spawned instead.
FORK_UNSAFE_MODULES = ("ctranslate2",)


def worker_start_method() -> str:
    """How to start worker processes: 'fork' (nothing pickled, and scripts without an ``if __name__ ==
    "__main__":`` guard work, as with torch's DataLoader), or 'spawn' where fork is missing or this process
    has loaded a library that breaks forked children. Forked workers use one torch thread each, so torch's
    OpenMP pool is never entered in a child."""
    import multiprocessing
    import sys

    if "fork" not in multiprocessing.get_all_start_methods():
        return "spawn"
    return "spawn" if any(name in sys.modules for name in FORK_UNSAFE_MODULES) else "fork"


def spawn_guard_hint() -> str:
    """What to say when spawned workers could not start: they re-import the main script, which must keep
    its work under ``if __name__ == "__main__":``."""
    import sys

    main = getattr(sys.modules.get("__main__"), "__file__", None)
    if main is None:
        return ""
    return (f"; worker processes are spawned here and re-import {main}: put its work under "
            "'if __name__ == \"__main__\":' (or use workers=1)")


def _worker_loop(task_fn: Callable[[Any], Any], tasks: Any, results: Any, worker_id: int, threads: int,
                 parent: int, init: Callable[[], None] | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    if installed("torch"):  # without it (the light core) the stages compute in NumPy
        import torch

        torch.set_num_threads(threads)
    setup_error = None
    if init is not None:
        try:
            init()
        except Exception as e:  # e.g. a model package missing: every task hears why, instead of a dead worker
            setup_error = f"worker setup failed: {type(e).__name__}: {e}"
    results.send((_READY, worker_id, True, None))  # task clocks start now, not while the worker was starting
    while True:
        try:
            task = tasks.get(timeout=1.0)
        except queue.Empty:
            if os.getppid() != parent:  # the loader's process is gone: do not linger
                break
            continue
        if task is None:
            break
        key, payload = task
        if setup_error is not None:
            answer = (key, worker_id, False, setup_error)
        else:
            try:
                answer = (key, worker_id, True, task_fn(payload))
            except Exception as e:  # reported to the main process, which decides
                answer = (key, worker_id, False, f"{type(e).__name__}: {e}")
        try:
            results.send(answer)
        except (OSError, ValueError):  # the parent closed its end: it is going away
            break
    results.close()
    os._exit(0)  # skip atexit handlers inherited from the parent


def describe_exit(code: int | None) -> str:
    """A process's exit code in words: 'SIGSEGV' for -11, 'exit code 3' for 3."""
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return signal.Signals(-code).name
    return f"exit code {code}"


class ProcessPool:
    """``num_workers`` forked processes running ``task_fn(payload)``.

    ``submit(key, payload)`` gives the task to the live worker with the fewest outstanding (or to the
    worker named by ``worker``); ``get`` returns ``(key, ok, result_or_message)``. A worker that dies is
    replaced and its outstanding tasks resubmitted; a task that has been running on ``max_deaths`` dying
    workers is returned as failed. ``submit`` may be called from one thread while another waits in ``get``.
    """

    def __init__(self, task_fn: Callable[[Any], Any], num_workers: int, threads_per_worker: int = 1,
                 init: Callable[[], None] | None = None, max_deaths: int = 2, start_method: str | None = None) -> None:
        if installed("torch"):  # torch's: tensors in results travel in shared memory
            import torch.multiprocessing as mp
        else:
            import multiprocessing as mp

        methods = mp.get_all_start_methods()
        # fork by default: the task function, the sources and the transforms are inherited, nothing pickled.
        # 'spawn' (task_fn and init must pickle) when the parent runs native thread pools a forked child
        # cannot use.
        self._ctx = mp.get_context(start_method or ("fork" if "fork" in methods else "spawn"))
        self._task_fn, self._threads, self._init, self._max_deaths = task_fn, threads_per_worker, init, max_deaths
        self._readers: dict[int, Any] = {}  # worker id -> the parent's end of its result pipe
        self._workers: dict[int, tuple[Any, Any]] = {}  # id -> (process, task queue)
        self._outstanding: dict[int, dict[Any, Any]] = {}  # id -> {key: payload}
        self._deaths: dict[Any, int] = {}
        self._given_up: list[tuple[Any, bool, Any]] = []
        self._started: dict[Any, float] = {}
        self._timed_out: dict[int, float] = {}
        self._next_id = 0
        self._lock = threading.RLock()  # the bookkeeping above, shared by submit() and get()
        self._closed = False
        self.replaced = 0
        for _ in range(num_workers):
            self.add_worker()

    @property
    def num_workers(self) -> int:
        return len(self._workers)

    def add_worker(self) -> None:
        with self._lock:
            self._check_open()
            worker_id, self._next_id = self._next_id, self._next_id + 1
            tasks = self._ctx.Queue()
            reader, writer = self._ctx.Pipe(duplex=False)
            process = self._ctx.Process(target=_worker_loop, daemon=True, name=f"audioflow-worker-{worker_id}",
                                        args=(self._task_fn, tasks, writer, worker_id, self._threads,
                                              os.getpid(), self._init))
            process.start()
            writer.close()  # the worker's end: closed here, so its death reads as EOF
            self._workers[worker_id] = (process, tasks)
            self._readers[worker_id] = reader
            self._outstanding[worker_id] = {}

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the worker pool is closed")

    def outstanding(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._outstanding.values())

    def least_busy(self) -> int:
        """The id of the live worker with the fewest outstanding tasks."""
        with self._lock:
            return min(self._outstanding, key=lambda w: len(self._outstanding[w]))

    def submit(self, key: Any, payload: Any, worker: int | None = None) -> int:
        """Queue ``payload`` under ``key``; returns the id of the worker it went to. ``worker``: that
        worker's id (KeyError when it is gone: it died and was replaced)."""
        with self._lock:
            self._check_open()
            if worker is None:
                worker = self.least_busy()
            elif worker not in self._workers:
                raise KeyError(worker)
            self._outstanding[worker][key] = payload
            self._started[key] = time.monotonic()
            self._workers[worker][1].put((key, payload))
            return worker

    def get(self, timeout: float | None = None, task_timeout: float | None = None) -> tuple[Any, bool, Any]:
        """The next result; a worker whose task has run over ``task_timeout`` seconds is killed (and
        replaced), and that task returned as failed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._check_open()  # closed from another thread: no result will come
            if self._given_up:
                return self._given_up.pop(0)
            answer = self._receive()
            if answer is None:
                with self._lock:
                    if task_timeout is not None:
                        self._kill_overdue(task_timeout)
                    self._replace_dead()
                if self._given_up:
                    continue
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError("no batch from the workers") from None
                continue
            key, worker_id, ok, value = answer
            with self._lock:
                if key == _READY:
                    self._restart_clock(worker_id)
                    continue
                if key not in self._outstanding.get(worker_id, {}):
                    continue  # a result for a task already resubmitted elsewhere
                del self._outstanding[worker_id][key]
                self._started.pop(key, None)
                self._restart_clock(worker_id)  # its next task starts running now
            return key, ok, value

    def _receive(self) -> tuple[Any, int, bool, Any] | None:
        """One result from any worker's pipe within the poll interval, or None. A pipe that reads as
        closed (its worker died, perhaps in the middle of a message) is dropped; ``_replace_dead`` sees the
        worker gone on the next poll."""
        from multiprocessing.connection import wait

        with self._lock:
            readers = {reader: worker_id for worker_id, reader in self._readers.items()}
        try:
            ready = wait(list(readers), timeout=_POLL_S)
        except (OSError, ValueError):  # a pipe closed by close() from another thread
            return None
        for reader in ready:
            try:
                return reader.recv()
            except (EOFError, OSError, pickle.UnpicklingError, ValueError):
                with self._lock:
                    if self._readers.get(readers[reader]) is reader:
                        del self._readers[readers[reader]]
                reader.close()
        return None

    def _restart_clock(self, worker_id: int) -> None:
        """The task a worker runs next (its oldest outstanding: tasks run in the order given) started now."""
        running = next(iter(self._outstanding.get(worker_id, {})), None)
        if running is not None:
            self._started[running] = time.monotonic()

    def _kill_overdue(self, task_timeout: float) -> None:
        now = time.monotonic()
        for worker_id, tasks in self._outstanding.items():
            # a worker runs its tasks in the order given: the first outstanding one is the one running
            running = next(iter(tasks), None)
            if running is not None and now - self._started.get(running, now) > task_timeout \
                    and worker_id not in self._timed_out:
                process = self._workers[worker_id][0]
                log.warning("worker %d: task %s ran over %g s; killing it", worker_id, running, task_timeout)
                self._timed_out[worker_id] = task_timeout
                process.kill()
                process.join(5.0)

    def _replace_dead(self) -> None:
        if self._closed:  # workers ended by close() are not deaths to replace
            return
        for worker_id, (process, tasks) in list(self._workers.items()):
            if process.is_alive():
                continue
            lost = self._outstanding.pop(worker_id)
            del self._workers[worker_id]
            reader = self._readers.pop(worker_id, None)
            if reader is not None:
                reader.close()
            tasks.cancel_join_thread()
            timed_out = self._timed_out.pop(worker_id, None)
            log.warning("worker %d died (%s) with %d tasks in hand; starting a replacement",
                        worker_id, describe_exit(process.exitcode), len(lost))
            self.replaced += 1
            self.add_worker()
            running = next(iter(lost), None)
            for key, payload in lost.items():
                self._started.pop(key, None)
                if timed_out is not None and key == running:
                    self._given_up.append((key, False, f"timed out after {timed_out:g} s (worker killed)"))
                    continue
                if key == running:
                    self._deaths[key] = self._deaths.get(key, 0) + 1
                if self._deaths.get(key, 0) >= self._max_deaths:
                    self._given_up.append((key, False, f"worker died {self._deaths[key]} time(s) on this task "
                                                       f"({describe_exit(process.exitcode)})"))
                    continue
                self.submit(key, payload)

    def close(self) -> None:
        """Stop every worker (asked first, then terminated). Safe while another thread waits in ``get()``:
        that call raises RuntimeError instead of replacing the workers that stop (seen on a GPU machine,
        where the loader's feeder thread was still waiting when the training loop closed the loader)."""
        with self._lock:
            self._closed = True
            workers, readers = list(self._workers.values()), list(self._readers.values())
            self._workers.clear()
            self._readers.clear()
            self._outstanding.clear()
        for _, tasks in workers:
            with contextlib.suppress(OSError, ValueError):
                tasks.put(None)
        deadline = time.monotonic() + 2.0
        for process, _ in workers:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.terminate()
                process.join(1.0)
        for _, tasks in workers:
            tasks.cancel_join_thread()
            tasks.close()
        for reader in readers:
            reader.close()

    def pids(self) -> list[int]:
        with self._lock:
            return [p.pid for p, _ in self._workers.values()]

    def worker_pids(self) -> dict[int, int]:
        """``{worker id: process id}`` of the live workers."""
        with self._lock:
            return {w: p.pid for w, (p, _) in self._workers.items()}


class ThreadPool:
    """The same interface on threads of the main process, for batches too cheap to be worth a
    process hop (measured at start), or ``num_workers=0``."""

    def __init__(self, task_fn: Callable[[Any], Any], num_workers: int = 1) -> None:
        self._task_fn = task_fn
        self._executor = ThreadPoolExecutor(max(1, num_workers), thread_name_prefix="audioflow-loader")
        self._futures: dict[Any, Future] = {}
        self._done: queue.Queue = queue.Queue()
        self.replaced = 0

    @property
    def num_workers(self) -> int:
        return 0

    def add_worker(self) -> None:  # threads do not add cores: nothing to grow
        return None

    def outstanding(self) -> int:
        return len(self._futures)

    def submit(self, key: Any, payload: Any) -> None:
        future = self._executor.submit(self._task_fn, payload)
        self._futures[key] = future
        future.add_done_callback(lambda f, k=key: self._done.put(k))

    def get(self, timeout: float | None = None) -> tuple[Any, bool, Any]:
        key = self._done.get(timeout=timeout)
        future = self._futures.pop(key)
        error = future.exception()
        if error is not None:
            return key, False, f"{type(error).__name__}: {error}"
        return key, True, future.result()

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._futures.clear()

    def pids(self) -> list[int]:
        return []
