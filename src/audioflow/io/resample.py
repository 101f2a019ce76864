"""Sample-rate conversion with soxr, the quality and speed reference."""

from __future__ import annotations

import numpy as np

from ..errors import ParameterError

# librosa's res_type names map onto the same soxr recipes
_QUALITY = {"qq": "QQ", "lq": "LQ", "mq": "MQ", "hq": "HQ", "vhq": "VHQ",
            "soxr_qq": "QQ", "soxr_lq": "LQ", "soxr_mq": "MQ", "soxr_hq": "HQ", "soxr_vhq": "VHQ"}


def soxr_quality(quality: str) -> str:
    """The soxr recipe name for ``quality`` ('qq', 'lq', 'mq', 'hq', 'vhq' or librosa's 'soxr_*')."""
    try:
        return _QUALITY[quality.lower()]
    except (KeyError, AttributeError):
        raise ParameterError(f"unknown res_quality {quality!r}; use one of 'qq', 'lq', 'mq', 'hq', "
                             "'vhq'") from None


def resample(y: np.ndarray, orig_sr: int, target_sr: int, quality: str = "hq") -> np.ndarray:
    """Resample ``y`` from ``orig_sr`` to ``target_sr`` (Hz) with soxr.

    Args:
        y: ``[frames]`` or ``[channels, frames]`` float array.
        orig_sr: sample rate of ``y`` in Hz.
        target_sr: wanted sample rate in Hz.
        quality: 'qq' (quick), 'lq', 'mq', 'hq' (default, as librosa's soxr_hq) or 'vhq'.

    Returns:
        The resampled array, same layout and dtype as ``y``.
    """
    import soxr

    if orig_sr == target_sr:
        return y
    recipe = soxr_quality(quality)
    if y.ndim == 1:
        return soxr.resample(y, orig_sr, target_sr, recipe)
    # soxr wants [frames, channels]; a transposed interleaved buffer is already that, for free
    return soxr.resample(y.T, orig_sr, target_sr, recipe).T
