"""A cache of decoded (and resampled) audio shared by the loader's worker processes: one ``.npy`` file
per item in a folder, in RAM (``/dev/shm``) or on disk, within a byte budget counted across processes.
Augmentation and cropping happen after it, so every epoch still differs."""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import shutil
import tempfile
import uuid
import weakref
from pathlib import Path

import numpy as np

from ..errors import ParameterError
from ..runtime import total_memory_bytes

log = logging.getLogger("audioflow.data")

_SHM = "/dev/shm"


def shm_free_bytes() -> int:
    try:
        st = os.statvfs(_SHM)
        return st.f_bavail * st.f_frsize
    except OSError:
        return 0


def default_memory_budget() -> int:
    """A quarter of RAM, and no more than half of what ``/dev/shm`` has free."""
    budget = total_memory_bytes() // 4
    free = shm_free_bytes()
    return min(budget, free // 2) if free else budget


def parse_bytes(value: int | float | str | None) -> int | None:
    """``'2GB'``, ``'512MiB'``, ``1e9`` → bytes."""
    if value is None or isinstance(value, (int, float)):
        return None if value is None else int(value)
    text = value.strip().upper().replace("IB", "B")
    units = {"KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40, "B": 1}
    for unit, scale in units.items():
        if text.endswith(unit):
            try:
                return int(float(text[: -len(unit)]) * scale)
            except ValueError:
                break
    raise ParameterError(f"cannot read a size from {value!r} (say e.g. '2GB')")


def _remove_if_owner(directory: str, owner: int) -> None:
    if os.getpid() == owner:  # a forked worker exiting must not delete the shared folder
        shutil.rmtree(directory, ignore_errors=True)


class DecodedCache:
    """Decoded items as ``.npy`` files under ``directory``.

    Args:
        mode: 'memory' (a private folder in ``/dev/shm``, removed when the loader closes) or 'disk'
            (``directory``, kept between runs: keys include the file's size and mtime).
        budget_bytes: stop adding items beyond this many bytes (all processes together).
        directory: the folder for 'disk' (default ``~/.cache/audioflow/decoded``).
    """

    def __init__(self, mode: str, budget_bytes: int, directory: str | os.PathLike[str] | None = None) -> None:
        if mode not in ("memory", "disk"):
            raise ParameterError(f"cache mode must be 'memory' or 'disk', got {mode!r}")
        self.mode, self.budget = mode, int(budget_bytes)
        if mode == "memory":
            root = _SHM if os.access(_SHM, os.W_OK) else tempfile.gettempdir()
            self.directory = Path(root) / f"audioflow-cache-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            self._finalizer = weakref.finalize(self, _remove_if_owner, str(self.directory), os.getpid())
        else:
            self.directory = Path(directory or Path.home() / ".cache" / "audioflow" / "decoded")
            self._finalizer = None
        self.directory.mkdir(parents=True, exist_ok=True)
        # bytes added by every process: the workers are forked, so they share this counter
        self._used = multiprocessing.get_context("fork").Value("q", self._existing_bytes(), lock=True)

    def _existing_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.directory.glob("*.npy")) if self.mode == "disk" else 0

    @property
    def used_bytes(self) -> int:
        return int(self._used.value)

    def path_for(self, key: str) -> Path:
        return self.directory / (hashlib.sha1(key.encode()).hexdigest()[:24] + ".npy")

    def get(self, key: str) -> np.ndarray | None:
        """The cached samples (memory-mapped: only what is read gets touched), or None."""
        try:
            return np.load(self.path_for(key), mmap_mode="r")
        except (FileNotFoundError, ValueError, OSError):  # absent, or a partial file from a killed run
            return None

    def put(self, key: str, samples: np.ndarray) -> bool:
        """Store ``samples`` unless that would pass the budget; True if stored."""
        size = samples.nbytes + 128
        with self._used.get_lock():
            if self._used.value + size > self.budget:
                return False
            self._used.value += size
        target = self.path_for(key)
        temp = target.with_suffix(f".{os.getpid()}.tmp")
        try:
            with open(temp, "wb") as f:
                np.save(f, np.ascontiguousarray(samples))
            os.replace(temp, target)  # readers never see a half-written file
        except OSError as e:
            with self._used.get_lock():
                self._used.value -= size
            temp.unlink(missing_ok=True)
            if not self.directory.exists():  # the loader closed (or its process exited) under a worker
                return False
            log.warning("cache: could not write %s (%s); going on without caching it", target, e)
            return False
        return True

    def close(self) -> None:
        if self._finalizer is not None:
            self._finalizer()

    def __repr__(self) -> str:
        return f"DecodedCache({self.mode!r}, {self.directory}, {self.used_bytes / 1e6:.1f}/{self.budget / 1e6:.0f} MB)"
