"""Repairs: click and pop removal, spectral-gating noise reduction, pre-emphasis."""

from __future__ import annotations

import numpy as np

from ..errors import ParameterError


def pre_emphasis(y: np.ndarray, coefficient: float = 0.97) -> np.ndarray:
    """``y[n] - coefficient * y[n-1]`` along the last axis (a first-order high-frequency tilt)."""
    if not 0 <= coefficient < 1:
        raise ParameterError(f"pre-emphasis coefficient must be in [0, 1), got {coefficient}")
    out = np.array(y, dtype=np.float32, copy=True)
    out[..., 1:] -= coefficient * np.asarray(y, np.float32)[..., :-1]
    return out


def remove_clicks(y: np.ndarray, sr: int, threshold: float = 8.0, max_click_s: float = 0.002
                  ) -> tuple[np.ndarray, int]:
    """Find clicks and pops as outliers of the signal's second difference (robust z-score above
    ``threshold`` against the median absolute deviation in a 50 ms neighbourhood), and replace each
    (widened by a guard of a few samples, up to ``max_click_s`` long) by cubic interpolation from the
    samples around it. Returns the repaired audio and the number of clicks."""
    from scipy.interpolate import CubicSpline
    from scipy.ndimage import median_filter

    x = np.atleast_2d(np.array(y, dtype=np.float64, copy=True))
    window = max(5, round(0.05 * sr) | 1)
    guard = max(2, round(0.0002 * sr))
    longest = max(1, round(max_click_s * sr))
    total = 0
    for channel in x:
        d2 = np.abs(np.diff(channel, 2, prepend=channel[0], append=channel[-1]))
        scale = median_filter(d2, size=window, mode="nearest") * 1.4826 + 1e-9
        bad = d2 / scale > threshold
        if not bad.any():
            continue
        # group neighbouring detections into clicks, widen them, keep short ones (long bursts are content)
        idx = np.flatnonzero(bad)
        breaks = np.flatnonzero(np.diff(idx) > 2 * guard) + 1
        mask = np.zeros(len(channel), bool)
        for group in np.split(idx, breaks):
            start, stop = max(0, group[0] - guard), min(len(channel), group[-1] + guard + 1)
            if stop - start <= longest + 2 * guard:
                mask[start:stop] = True
                total += 1
        good = np.flatnonzero(~mask)
        if len(good) >= 4 and mask.any():
            channel[mask] = CubicSpline(good, channel[good])(np.flatnonzero(mask))
    out = x.astype(np.float32)
    return (out[0] if np.ndim(y) == 1 else out), total


def spectral_gate(y: np.ndarray, sr: int, reduction_db: float = 12.0, threshold_std: float = 1.5,
                  noise_quantile: float = 0.1, n_fft: int = 2048, hop_length: int = 512,
                  noise_clip: np.ndarray | None = None) -> np.ndarray:
    """Spectral-gating noise reduction: per frequency, a threshold from the noise (the quietest
    ``noise_quantile`` of frames, or ``noise_clip``) at mean + ``threshold_std`` standard deviations (in
    dB); time-frequency cells under it are attenuated by ``reduction_db`` with a mask smoothed over
    neighbouring bins and frames (no musical-noise speckle)."""
    import torch

    from ..dsp import get_window, istft, stft

    x = torch.as_tensor(np.atleast_2d(np.asarray(y, np.float32)))
    window = get_window("hann", n_fft)
    spec = stft(x, n_fft, hop_length, window)
    db = 20 * torch.log10(spec.abs().clamp(min=1e-10))
    if noise_clip is not None:
        noise = 20 * torch.log10(stft(torch.as_tensor(np.atleast_2d(np.asarray(noise_clip, np.float32))), n_fft,
                                      hop_length, window).abs().clamp(min=1e-10))
    else:
        energy = db.mean(dim=(0, 1))  # [frames], all channels together
        noise = db[:, :, energy <= torch.quantile(energy, noise_quantile)]
    mean, std = noise.mean(dim=-1, keepdim=True), noise.std(dim=-1, keepdim=True).nan_to_num(0.0)
    keep = (db > mean + threshold_std * std).float()
    # smooth the mask over 3 bins x 5 frames so isolated cells neither pass nor vanish alone
    kernel = torch.ones(1, 1, 3, 5) / 15
    keep = torch.nn.functional.conv2d(keep[:, None], kernel, padding=(1, 2))[:, 0]
    floor = 10 ** (-reduction_db / 20)
    gain = floor + (1 - floor) * keep
    out = istft(spec * gain, n_fft, hop_length, window, length=x.shape[-1]).numpy()
    return out[0] if np.ndim(y) == 1 else out
