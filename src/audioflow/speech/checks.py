"""Where audio enters the speech models: one check of shape, rate and sample values, so the native code
behind them (ONNX Runtime, CTranslate2, DeepFilterNet and RNNoise through ctypes) only ever sees what it
was built for."""

from __future__ import annotations

import numpy as np

from ..errors import InvalidAudioError, ParameterError
from ..io.decoders import check_range

EMBED_SR = 16000  # Hz: the rate the speaker models (GE2E, CAM++, segmentation) take
MIN_SR = 4000  # Hz: below this there is no speech band left for a model to hear
MAX_SR = 768000  # Hz: the highest rate any common converter writes
MAX_ABS = 1e6  # audio is about ±1; far beyond, squares and sums inside the models overflow float32


def check_input(y: np.ndarray, sr: int, what: str) -> np.ndarray:
    """``y`` as float32 ``[shape=(n,)]`` or ``[shape=(channels, n)]`` after checking it and ``sr``.

    Args:
        y: samples.
        sr: sample rate of ``y`` in Hz, a whole number within 4000-768000.
        what: the caller's name for messages ("denoise", "VAD", ...).

    Raises:
        ParameterError: a rate out of range or a shape that is not audio.
        InvalidAudioError: NaN, infinite or absurd (beyond ±1e6) samples.
    """
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or not MIN_SR <= sr <= MAX_SR:
        raise ParameterError(f"{what}: sample rate must be a whole number of Hz within {MIN_SR}-{MAX_SR}, "
                             f"got {sr!r}")
    y = np.asarray(y, dtype=np.float32)
    if y.ndim not in (1, 2) or (y.ndim == 2 and y.shape[0] == 0):
        raise ParameterError(f"{what}: audio must be (samples,) or (channels, samples), got shape {y.shape}")
    with np.errstate(over="ignore", invalid="ignore"):
        total = y.sum(dtype=np.float64) if y.size else 0.0
    if not np.isfinite(total) and not np.isfinite(y).all():
        raise InvalidAudioError(f"{what}: the audio holds NaN or infinite samples")
    check_range(y, what)
    return y
