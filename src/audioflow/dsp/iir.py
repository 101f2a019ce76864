"""Recursive (IIR) filtering, batched: Butterworth designs as second-order sections, one filter per row,
run causally or forward and backward (zero phase).

On the CPU the sections run in a small C kernel (``_iir``) that filters :data:`LANES` (16) lanes in
lock-step, in float32: rows of a batch, or segments of one long row that each start early by the
filter's memory (the samples after which a pole's contribution has fallen below 1e-6), so one 10 s clip
uses the vector units as a batch does. Elsewhere, or where the kernel was not built, the same filter's
response is applied in the frequency domain (equal within float32 rounding and that 1e-6 tail)."""

from __future__ import annotations

import math

import numpy as np
import torch

from .filters import fft_filter, filter_length

try:  # built by setup.py when a C compiler is present; optional by design
    from . import _iir
except ImportError:  # pragma: no cover - exercised where no compiler was available
    _iir = None

LANES = _iir.LANES if _iir is not None else 16  # lanes the kernel runs in lock-step
TAIL_TOLERANCE = 1e-6  # a pole's remaining weight after a lane's warm-up, relative to the signal
MAX_SECTIONS = 16


def native_available() -> bool:
    """True where the C kernel was built (CPU filtering in the time domain)."""
    return _iir is not None


def butterworth_sos(cutoff: np.ndarray | float, order: int, kind: str, sample_rate: float,
                    squared_at_minus_3db: bool = False) -> np.ndarray:
    """Digital Butterworth low- or high-pass sections (bilinear transform, cutoff prewarped):
    float64 ``[rows, ceil(order / 2), 6]`` (b0 b1 b2 a0 a1 a2), one row per ``cutoff`` (Hz).

    ``squared_at_minus_3db``: place the corner so that the filter run twice (forward and backward) is at
    -3 dB at ``cutoff``, instead of the single pass (each pass then sits at -1.5 dB there).
    """
    if kind not in ("lowpass", "highpass"):
        raise ValueError(f"unknown filter kind {kind!r}")
    if order < 1 or (order + 1) // 2 > MAX_SECTIONS:
        raise ValueError(f"order must be 1 to {2 * MAX_SECTIONS}, got {order}")
    fc = np.atleast_1d(np.asarray(cutoff, np.float64))
    if not np.all((fc > 0) & (fc < sample_rate / 2)):
        raise ValueError(f"cutoffs must lie strictly between 0 and {sample_rate / 2:g} Hz")
    k = np.tan(np.pi * fc / sample_rate)  # the digital corner on the analog axis
    if squared_at_minus_3db:  # |H|^2 = 1 / (1 + (w / K)^(2 order)) = 1 / sqrt(2) at the asked cutoff
        shift = (math.sqrt(2) - 1) ** (1 / (2 * order))
        k = k / shift if kind == "lowpass" else k * shift
    sections = []
    for i in range(order // 2):  # conjugate pole pairs, each a biquad of its Butterworth Q
        q = 1 / (2 * math.sin((2 * i + 1) * math.pi / (2 * order)))
        norm = 1 / (1 + k / q + k * k)
        b0 = k * k * norm if kind == "lowpass" else norm
        b1 = 2 * b0 if kind == "lowpass" else -2 * b0
        sections.append(np.stack([b0, b1, b0, np.ones_like(k), 2 * (k * k - 1) * norm,
                                  (1 - k / q + k * k) * norm], -1))
    if order % 2:  # the real pole
        norm = 1 / (1 + k)
        b0 = k * norm if kind == "lowpass" else norm
        b1 = b0 if kind == "lowpass" else -b0
        zero = np.zeros_like(k)
        sections.append(np.stack([b0, b1, zero, np.ones_like(k), (k - 1) * norm, zero], -1))
    return np.stack(sections, 1)


def sosfilt(x: torch.Tensor, sos: np.ndarray | torch.Tensor, zero_phase: bool = False) -> torch.Tensor:
    """Filter ``x [rows, time]`` by the cascade ``sos [rows, sections, 6]`` (a0 = 1; one cascade per row, or
    ``[1, sections, 6]`` for all), from a zero state, as scipy's ``sosfilt``.

    ``zero_phase``: run forward, then backward over the result (the squared magnitude, no phase shift;
    the forward pass runs on past the end by the filter's memory, so the result is the linear, not the
    circular, zero-phase convolution). Returns a new tensor on ``x``'s device and dtype (the kernel
    computes in float32, as scipy does for float32 input and coefficients).
    """
    sos = np.asarray(sos.detach().cpu() if isinstance(sos, torch.Tensor) else sos, np.float64)
    rows, time = x.shape
    if sos.ndim != 3 or sos.shape[2] != 6 or sos.shape[0] not in (1, rows):
        raise ValueError(f"sos must be [rows, sections, 6] or [1, sections, 6], got {list(sos.shape)}")
    sos = np.broadcast_to(sos / sos[..., 3:4], (rows, *sos.shape[1:]))
    if rows == 0 or time == 0:
        return x.clone()
    memory = memory_samples(sos)
    tail = int(memory.max()) if zero_phase else 0
    if _iir is None or x.device.type != "cpu" or sos.shape[1] > MAX_SECTIONS:
        return _sosfilt_fft(x, sos, zero_phase, tail)
    size = time + tail
    src = np.empty((rows, size), np.float32)
    src[:, :time] = x.detach().numpy()
    src[:, time:] = 0.0
    dst = np.empty_like(src)
    coef = np.ascontiguousarray(sos, np.float32)
    _iir.sos_lanes(src, dst, rows, size, coef, plan_lanes(rows, size, memory, reverse=False), False)
    if zero_phase:
        src, dst = dst, src
        _iir.sos_lanes(src, dst, rows, size, coef, plan_lanes(rows, size, memory, reverse=True), True)
    return torch.from_numpy(dst[:, :time]).to(x.dtype)


def memory_samples(sos: np.ndarray) -> np.ndarray:
    """Per row, the samples after which the slowest pole's weight is below :data:`TAIL_TOLERANCE` (int64 [rows])."""
    a1, a2 = sos[..., 4], sos[..., 5]
    disc = a1 * a1 - 4 * a2
    root = np.sqrt(np.abs(disc))
    radius = np.where(disc < 0, np.sqrt(np.abs(a2)), np.maximum(np.abs(-a1 + root), np.abs(-a1 - root)) / 2)
    r = np.clip(radius.max(axis=1), 1e-9, 1 - 1e-9)
    # a pole of radius r leaves r^n of the state after n samples, summed over the later ones 1 / (1 - r)
    return np.ceil(np.log(TAIL_TOLERANCE * (1 - r)) / np.log(r)).astype(np.int64)


def plan_lanes(rows: int, time: int, memory: np.ndarray, reverse: bool) -> np.ndarray:
    """Lanes ``[n, 4]`` (row, lo, hi, warm) for the kernel: each row cut into up to ``ceil(LANES / rows)``
    segments, none shorter than twice the row's memory (its warm-up), so the kernel's lanes are full
    when the batch is small."""
    memory = np.asarray(memory, np.int64).reshape(rows)
    pieces = np.clip(np.minimum(-(-LANES // rows), time // np.maximum(1, 2 * memory)), 1, None)
    size = -(-time // pieces)  # per row
    count = -(-time // size)  # segments per row (the last may be short)
    row = np.repeat(np.arange(rows), count)
    first = np.concatenate([[0], np.cumsum(count)[:-1]])
    lo = (np.arange(len(row)) - np.repeat(first, count)) * size[row]
    hi = np.minimum(time, lo + size[row])
    warm = np.minimum(memory[row], time - hi if reverse else lo)
    return np.stack([row, lo, hi, warm], 1).astype(np.int64)


def _sosfilt_fft(x: torch.Tensor, sos: np.ndarray, zero_phase: bool, tail: int) -> torch.Tensor:
    """The same filter by its frequency response, padded past its memory."""
    pad = max(tail, int(memory_samples(sos).max()))
    n = filter_length(x.shape[-1], pad)
    z = np.exp(-1j * 2 * np.pi * np.arange(n // 2 + 1) / n)  # z^-1 on the rfft bins
    response = np.ones((sos.shape[0], n // 2 + 1), np.complex128)
    for s in range(sos.shape[1]):
        b0, b1, b2, _, a1, a2 = (sos[:, s, k, None] for k in range(6))
        response *= (b0 + b1 * z + b2 * z * z) / (1 + a1 * z + a2 * z * z)
    if zero_phase:
        response = np.abs(response) ** 2
    h = torch.from_numpy(response).to(x.device)
    h = h.real.to(x.dtype) if zero_phase else h.to(torch.complex64 if x.dtype != torch.float64 else torch.complex128)
    if zero_phase:
        return fft_filter(x, h, pad)
    spec = torch.fft.rfft(x, n=n, dim=-1) * h
    return torch.fft.irfft(spec, n=n, dim=-1)[..., : x.shape[-1]]
