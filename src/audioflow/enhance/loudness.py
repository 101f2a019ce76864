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


_BLOCK_S, _STEP = 0.4, 0.25  # BS.1770-4: 400 ms gating blocks, 75 % overlap
_CHANNEL_GAINS = (1.0, 1.0, 1.0, 1.41, 1.41)  # L, R, C, Ls, Rs


def channel_gains(channels: int) -> np.ndarray:
    """BS.1770-4 channel weights: up to 5 channels L, R, C, Ls, Rs (pyloudnorm's); from 6 on, the
    WAVE/SMPTE order L, R, C, LFE, then surrounds: the LFE is left out (0) and every surround weighs 1.41."""
    if channels <= len(_CHANNEL_GAINS):
        return np.asarray(_CHANNEL_GAINS[:channels])
    return np.asarray([1.0, 1.0, 1.0, 0.0] + [1.41] * (channels - 4))


def loudness_blocks(y: np.ndarray, sr: int) -> np.ndarray:
    """BS.1770 block energies ``[channels, blocks]``: the mean square of each 400 ms block (75 % overlap)
    of the K-weighted signal (pyloudnorm's filters and block boundaries). Blocks of consecutive chunks of
    one long input can be concatenated and gated together (:func:`gated_loudness`)."""
    try:
        import pyloudnorm
    except ImportError as e:  # pragma: no cover - the music extra installs it
        raise MissingDependencyError("loudness needs pyloudnorm: pip install 'audioflow[music]'") from e
    x = _frames_channels(np.asarray(y, np.float64))
    frames = x.shape[0]
    if frames < round(_BLOCK_S * sr):
        return np.zeros((x.shape[1], 0))
    meter = pyloudnorm.Meter(sr)
    weighted = np.empty_like(x)
    for channel in range(x.shape[1]):
        signal = x[:, channel]
        for stage in meter._filters.values():
            signal = stage.apply_filter(signal)
        weighted[:, channel] = signal
    # the block sums from one cumulative sum (pyloudnorm loops over blocks; same boundaries)
    blocks = int(np.round((frames / sr - _BLOCK_S) / (_BLOCK_S * _STEP))) + 1
    j = np.arange(blocks)
    lower = (_BLOCK_S * (j * _STEP) * sr).astype(np.int64)
    upper = np.minimum((_BLOCK_S * (j * _STEP + 1) * sr).astype(np.int64), frames)
    cumulative = np.vstack([np.zeros((1, x.shape[1])), np.cumsum(np.square(weighted), axis=0)])
    return ((cumulative[upper] - cumulative[lower]) / (_BLOCK_S * sr)).T


def gated_loudness(blocks: np.ndarray) -> float | None:
    """Integrated loudness (LUFS) from block energies ``[channels, blocks]``: the absolute gate at -70 LUFS,
    then the relative gate 10 LU under the absolutely gated mean; None when nothing passes."""
    if blocks.shape[-1] == 0:
        return None
    gains = channel_gains(blocks.shape[0])[:, None]
    with np.errstate(divide="ignore"):
        block_loudness = -0.691 + 10 * np.log10((gains * blocks).sum(axis=0))
    passed = block_loudness >= -70.0
    if not passed.any():
        return None
    relative = -0.691 + 10 * np.log10((gains[:, 0] * blocks[:, passed].mean(axis=1)).sum()) - 10.0
    passed &= block_loudness > relative
    if not passed.any():
        return None
    value = -0.691 + 10 * np.log10((gains[:, 0] * blocks[:, passed].mean(axis=1)).sum())
    return float(value) if math.isfinite(value) else None


def integrated_loudness(y: np.ndarray, sr: int) -> float | None:
    """Integrated loudness in LUFS (ITU-R BS.1770-4: K-weighted, gated); None when the audio is shorter
    than one 400 ms block or entirely below the absolute gate (-70 LUFS)."""
    return gated_loudness(loudness_blocks(y, sr))


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

    Returns the audio and a report: loudness before and after (LUFS), gain (dB), true peak after (dBTP;
    None for silence). Silent or too-short audio is returned unchanged (loudness None)."""
    before = integrated_loudness(y, sr)
    if before is None:
        peak = true_peak_db(y)
        return y, {"loudness_before": None, "loudness_after": None, "gain_db": 0.0,
                   "true_peak_db": peak if math.isfinite(peak) else None}
    gain_db = target_lufs - before
    out = (np.asarray(y, np.float64) * 10 ** (gain_db / 20)).astype(np.float32)
    if true_peak_ceiling_db is not None:
        out = limit_true_peak(out, sr, true_peak_ceiling_db)
    return out, {"loudness_before": before, "loudness_after": integrated_loudness(out, sr), "gain_db": gain_db,
                 "true_peak_db": true_peak_db(out)}
