"""Models loaded once per process, placed on a device, and moved to the CPU with a logged warning when
the accelerator runs out of memory. Stages get one :class:`ModelManager` in ``setup(models)``."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("audioflow.models")


def is_out_of_memory(error: BaseException) -> bool:
    """True for CUDA/MPS out-of-memory errors (torch raises them as RuntimeError subclasses)."""
    name = type(error).__name__
    return name in ("OutOfMemoryError", "CudaOutOfMemoryError") or "out of memory" in str(error).lower()


class ModelManager:
    """A per-process cache of loaded models.

    ``get(name, load, device)`` calls ``load(device)`` the first time (``device`` a string such as
    'cuda' or 'cpu') and returns the cached model afterwards. If loading (or ``run``) on an accelerator
    runs out of memory, the model is loaded on the CPU instead and a warning says so.
    """

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self._models: dict[str, tuple[Any, str]] = {}
        self._lock = threading.Lock()

    def get(self, name: str, load: Callable[[str], Any], device: str | None = None) -> Any:
        with self._lock:
            if name not in self._models:
                target = device or self.device
                try:
                    self._models[name] = (load(target), target)
                except Exception as e:
                    if target == "cpu" or not is_out_of_memory(e):
                        raise
                    log.warning("model %s: out of memory on %s, loading it on the CPU instead", name, target)
                    self._models[name] = (load("cpu"), "cpu")
            return self._models[name][0]

    def run(self, name: str, load: Callable[[str], Any], call: Callable[[Any], Any]) -> Any:
        """``call(model)``; on an out-of-memory error on the accelerator, reload on the CPU and call again."""
        model = self.get(name, load)
        try:
            return call(model)
        except Exception as e:
            if self._models[name][1] == "cpu" or not is_out_of_memory(e):
                raise
            log.warning("model %s: out of memory while running on %s; moving it to the CPU", name,
                        self._models[name][1])
            with self._lock:
                self._models[name] = (load("cpu"), "cpu")
            return call(self._models[name][0])

    def loaded(self) -> dict[str, str]:
        """What is loaded, and where: ``{name: device}``."""
        return {name: device for name, (_, device) in self._models.items()}
