"""Filters as second-order sections: RBJ cookbook biquads (peaking, shelves) and Butterworth high/low-pass,
applied causally with scipy's ``sosfilt`` (O(N), the reference)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..errors import ParameterError


def _check(sr: int, freq: float) -> None:
    if not 0 < freq < sr / 2:
        raise ParameterError(f"frequency {freq} Hz must be between 0 and Nyquist ({sr / 2:g} Hz)")


def rbj_biquad(kind: str, freq: float, sr: int, gain_db: float = 0.0, q: float = 0.7071) -> np.ndarray:
    """One RBJ cookbook biquad as an SOS row ``[b0, b1, b2, 1, a1, a2]``.

    Args:
        kind: 'peaking', 'lowshelf' or 'highshelf'.
        freq: centre (peaking) or corner (shelves) frequency in Hz.
        sr: sample rate in Hz.
        gain_db: gain at the centre / of the shelf, in dB, within ±60.
        q: quality factor, within (0, 100] (peaking: bandwidth; shelves: slope, 0.7071 is the steepest
            without overshoot).
    """
    _check(sr, freq)
    if not 0 < q <= 100:
        raise ParameterError(f"Q must be within (0, 100], got {q}")
    if not -60 <= gain_db <= 60:  # beyond, 10 ** (gain / 40) overflows or the filter is all noise
        raise ParameterError(f"gain must be within ±60 dB, got {gain_db}")
    a = 10 ** (gain_db / 40)
    w0 = 2 * math.pi * freq / sr
    cos, alpha = math.cos(w0), math.sin(w0) / (2 * q)
    if kind == "peaking":
        b = [1 + alpha * a, -2 * cos, 1 - alpha * a]
        den = [1 + alpha / a, -2 * cos, 1 - alpha / a]
    elif kind in ("lowshelf", "highshelf"):
        sign = 1 if kind == "lowshelf" else -1
        root = 2 * math.sqrt(a) * alpha
        b = [a * ((a + 1) - sign * (a - 1) * cos + root), sign * 2 * a * ((a - 1) - sign * (a + 1) * cos),
             a * ((a + 1) - sign * (a - 1) * cos - root)]
        den = [(a + 1) + sign * (a - 1) * cos + root, -sign * 2 * ((a - 1) + sign * (a + 1) * cos),
               (a + 1) + sign * (a - 1) * cos - root]
    else:
        raise ParameterError(f"unknown biquad kind {kind!r}; use 'peaking', 'lowshelf' or 'highshelf'")
    return np.array([*(v / den[0] for v in b), 1.0, den[1] / den[0], den[2] / den[0]])


def butterworth(kind: str, freq: float, sr: int, order: int = 4) -> np.ndarray:
    """Butterworth 'highpass' or 'lowpass' SOS of ``order`` at ``freq`` Hz."""
    from scipy.signal import butter

    _check(sr, freq)
    if kind not in ("highpass", "lowpass"):
        raise ParameterError(f"unknown filter {kind!r}; use 'highpass' or 'lowpass'")
    return butter(order, freq, btype=kind, fs=sr, output="sos")


def apply_sos(y: np.ndarray, sos: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """Filter ``y`` (``[frames]`` or ``[channels, frames]``) by the cascade of SOS rows."""
    from scipy.signal import sosfilt

    rows = np.atleast_2d(np.vstack(sos) if isinstance(sos, (list, tuple)) else sos)
    return sosfilt(rows, y, axis=-1).astype(np.asarray(y).dtype, copy=False)


def response_db(sos: np.ndarray, freqs: np.ndarray, sr: int) -> np.ndarray:
    """Magnitude response of an SOS cascade at ``freqs`` (Hz), in dB."""
    from scipy.signal import sosfreqz

    _, h = sosfreqz(np.atleast_2d(sos), worN=np.asarray(freqs, np.float64), fs=sr)
    return 20 * np.log10(np.maximum(np.abs(h), 1e-12))
