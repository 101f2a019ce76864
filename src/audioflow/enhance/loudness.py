"""Loudness (ITU-R BS.1770 through pyloudnorm), true peak (BS.1770-4 annex 2: 4x oversampling), and a
look-ahead true-peak limiter."""

from __future__ import annotations

import math

import numpy as np

from ..errors import MissingDependencyError

TRUE_PEAK_OVERSAMPLING = 4


def _frames_channels(y: np.ndarray) -> np.ndarray:
    """``[channels, frames]`` or ``[frames]`` → ``[frames, channels]`` (pyloudnorm's layout)."""
    return y[:, None] if y.ndim == 1 else y.T


def integrated_loudness(y: np.ndarray, sr: int) -> float | None:
    """Integrated loudness in LUFS (gated, K-weighted); None when the audio is shorter than one 400 ms
    block or entirely below the absolute gate (-70 LUFS)."""
    try:
        import pyloudnorm
    except ImportError as e:  # pragma: no cover - the music extra installs it
        raise MissingDependencyError("loudness needs pyloudnorm: pip install 'audioflow[music]'") from e
    if y.shape[-1] < round(0.4 * sr):
        return None
    value = float(pyloudnorm.Meter(sr).integrated_loudness(_frames_channels(np.asarray(y, np.float64))))
    return value if math.isfinite(value) else None


def true_peak_envelope(y: np.ndarray) -> np.ndarray:
    """Per-sample true peak ``[frames]`` (max over channels of the 4x oversampled magnitude around each
    sample), linear."""
    from scipy.signal import resample_poly

    x = np.atleast_2d(np.asarray(y, np.float32))
    up = np.abs(resample_poly(x, TRUE_PEAK_OVERSAMPLING, 1, axis=-1))
    frames = x.shape[-1]
    up = up[:, : frames * TRUE_PEAK_OVERSAMPLING].reshape(x.shape[0], frames, TRUE_PEAK_OVERSAMPLING)
    return np.maximum(up.max(axis=(0, 2)), np.abs(x).max(axis=0))


def true_peak_db(y: np.ndarray) -> float:
    """True peak in dBTP (the largest magnitude of the 4x oversampled signal, or of the samples)."""
    from scipy.signal import resample_poly

    if not np.size(y):
        return -math.inf
    x = np.atleast_2d(np.asarray(y, np.float32))
    up = resample_poly(x, TRUE_PEAK_OVERSAMPLING, 1, axis=-1)
    peak = max(float(np.max(np.abs(up))), float(np.max(np.abs(x))))
    return 20 * math.log10(peak) if peak > 0 else -math.inf


def limit_true_peak(y: np.ndarray, sr: int, ceiling_db: float = -1.0, lookahead_s: float = 0.0015,
                    release_s: float = 0.05) -> np.ndarray:
    """Keep the true peak at or under ``ceiling_db`` dBTP with a look-ahead limiter: the gain needed at
    each sample is the minimum over the next ``lookahead_s`` seconds (so it is already down when a peak
    arrives), and recovers with a ``release_s`` time constant."""
    from scipy.ndimage import minimum_filter1d
    from scipy.signal import lfilter

    ceiling = 10 ** (ceiling_db / 20)
    if true_peak_db(y) <= ceiling_db:  # the common case: nothing to limit, no envelope needed
        return y
    envelope = true_peak_envelope(y)
    need = np.minimum(1.0, ceiling / np.maximum(envelope, 1e-12))
    ahead = max(1, round(lookahead_s * sr))
    # the gain is down from ``ahead`` samples before a peak to ``ahead`` after (a centred minimum)
    gain = minimum_filter1d(need, 2 * ahead + 1, mode="nearest")
    # release: the gain may rise only slowly (one-pole smoothing of the rise), never above what is needed
    coeff = math.exp(-1.0 / max(1.0, release_s * sr))
    smooth = lfilter([1 - coeff], [1, -coeff], gain, zi=[gain[0] * coeff])[0]
    gain = np.minimum(gain, smooth)
    out = (np.asarray(y, np.float64) * gain).astype(np.asarray(y).dtype)
    # a last guard against inter-sample overshoot the look-ahead missed
    residual = true_peak_envelope(out).max()
    return out * min(1.0, ceiling / residual) if residual > ceiling else out


def normalize_loudness(y: np.ndarray, sr: int, target_lufs: float = -23.0,
                       true_peak_ceiling_db: float | None = -1.0) -> tuple[np.ndarray, dict[str, float | None]]:
    """Gain ``y`` to ``target_lufs`` (EBU R128's -23 by default), then limit its true peak.

    Returns the audio and a report: loudness before and after (LUFS), gain (dB), true peak after (dBTP).
    Silent or too-short audio is returned unchanged (loudness None)."""
    before = integrated_loudness(y, sr)
    if before is None:
        return y, {"loudness_before": None, "loudness_after": None, "gain_db": 0.0, "true_peak_db": true_peak_db(y)}
    gain_db = target_lufs - before
    out = (np.asarray(y, np.float64) * 10 ** (gain_db / 20)).astype(np.float32)
    if true_peak_ceiling_db is not None:
        out = limit_true_peak(out, sr, true_peak_ceiling_db)
    return out, {"loudness_before": before, "loudness_after": integrated_loudness(out, sr), "gain_db": gain_db,
                 "true_peak_db": true_peak_db(out)}
