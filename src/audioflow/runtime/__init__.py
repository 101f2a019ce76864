"""The machine under the faces and the training loader: worker processes (:class:`ProcessPool`, crash-
isolated, growable, fork-safe), usable cores and memory, and device resolution. The loader, the
pipeline and the server all use these; none of them imports another's."""

from .machine import device_name, resolve_device, total_memory_bytes, usable_cores
from .pool import ProcessPool, ThreadPool, describe_exit, spawn_guard_hint, worker_start_method

__all__ = ["ProcessPool", "ThreadPool", "describe_exit", "device_name", "resolve_device", "spawn_guard_hint",
           "total_memory_bytes", "usable_cores", "worker_start_method"]
