"""What this machine offers the layers above: usable cores, memory, and the device a model or a batch
transform runs on ('auto' resolved once, at the face)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..errors import ParameterError

if TYPE_CHECKING:
    import torch


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and ``taskset`` narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS
        return os.cpu_count() or 1


def total_memory_bytes() -> int:
    """Physical memory, bytes (8 GiB where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 8 << 30


def device_name(device: str | torch.device) -> str:
    """:func:`resolve_device` as a name ('cpu', 'cuda', 'cuda:1'); without torch installed 'auto' and 'cpu' are
    'cpu' (a run whose steps compute in NumPy needs no torch) and any other device names the extra."""
    from .extras import installed, missing_dependency

    if installed("torch"):
        return str(resolve_device(device))
    if str(device) in ("auto", "cpu"):
        return "cpu"
    raise missing_dependency("torch", f"device {device!r}", extra="train")


def resolve_device(device: str | torch.device) -> torch.device:
    """'auto' → CUDA when available, then MPS, else CPU; a name or ``torch.device`` as given
    (ParameterError for a name torch does not know)."""
    import torch

    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        return torch.device(device)
    except RuntimeError as e:
        raise ParameterError(f"unknown device {device!r}") from e
