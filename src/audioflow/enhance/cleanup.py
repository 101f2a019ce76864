"""Repairs: click and pop removal, spectral-gating noise reduction, pre-emphasis."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..errors import ParameterError

if TYPE_CHECKING:
    import torch


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
    from scipy.ndimage import median_filter

    # float32 throughout, one channel at a time: the working memory is a few copies of one channel (float64
    # copies of every channel made it ~24x the input, the most of any enhance step)
    x = np.atleast_2d(np.array(y, dtype=np.float32, copy=True))
    window = max(5, round(0.05 * sr) | 1)
    guard = max(2, round(0.0002 * sr))
    longest = max(1, round(max_click_s * sr))
    total = 0
    for channel in x:
        d2 = np.abs(np.diff(channel, 2, prepend=channel[0], append=channel[-1]))
        scale = median_filter(d2, size=window, mode="nearest")
        scale *= 1.4826
        scale += 1e-9
        np.divide(d2, scale, out=d2)
        del scale
        bad = d2 > threshold
        del d2
        if not bad.any():
            continue
        # group neighbouring detections into clicks, widen them, keep short ones (long bursts are content)
        idx = np.flatnonzero(bad)
        del bad
        breaks = np.flatnonzero(np.diff(idx) > 2 * guard) + 1
        spans = []
        for group in np.split(idx, breaks):
            start, stop = max(0, group[0] - guard), min(len(channel), group[-1] + guard + 1)
            if stop - start <= longest + 2 * guard:
                spans.append((start, stop))
        total += len(spans)
        for i, (start, stop) in enumerate(spans):  # sorted: the clicks near this one are its neighbours in the list
            first, last = i, i
            while first > 0 and spans[first - 1][1] > start - _CONTEXT:
                first -= 1
            while last + 1 < len(spans) and spans[last + 1][0] < stop + _CONTEXT:
                last += 1
            _interpolate(channel, start, stop, spans[first:last + 1])
    return (x[0] if np.ndim(y) == 1 else x), total


_CONTEXT = 32  # good samples on each side of a click that its interpolating spline passes through


def _interpolate(channel: np.ndarray, start: int, stop: int, nearby: list[tuple[int, int]]) -> None:
    """Replace ``channel[start:stop]`` by a cubic spline through the good samples around it (up to
    ``_CONTEXT`` on each side, skipping other clicks): local, so its cost does not grow with the file."""
    from scipy.interpolate import CubicSpline

    lo, hi = max(0, start - _CONTEXT), min(len(channel), stop + _CONTEXT)
    good = np.ones(hi - lo, bool)
    for a, b in nearby:
        good[max(a, lo) - lo:min(b, hi) - lo] = False
    known = np.flatnonzero(good)
    if len(known) < 4:
        return
    spline = CubicSpline(known + lo, channel[lo:hi][known].astype(np.float64))
    channel[start:stop] = spline(np.arange(start, stop))


def spectral_gate(y: np.ndarray, sr: int, reduction_db: float = 12.0, threshold_std: float = 1.5,
                  noise_quantile: float = 0.1, n_fft: int = 2048, hop_length: int = 512,
                  noise_clip: np.ndarray | None = None) -> np.ndarray:
    """Spectral-gating noise reduction: per frequency, a threshold from the noise (the quietest
    ``noise_quantile`` of frames, or ``noise_clip``) at mean + ``threshold_std`` standard deviations (in
    dB); time-frequency cells under it are attenuated by ``reduction_db`` with a mask smoothed over
    neighbouring bins and frames (no musical-noise speckle).

    One channel at a time, its spectra computed in place: the working memory is about ten times one
    channel's samples (it was about 46 times the whole input's), so a server admits ~4x longer inputs."""
    import torch

    from ..dsp import get_window, istft, stft

    x = np.atleast_2d(np.asarray(y, np.float32))
    window = get_window("hann", n_fft)

    def decibels(signal: np.ndarray) -> torch.Tensor:
        spec = stft(torch.as_tensor(signal), n_fft, hop_length, window)
        return spec.abs().clamp_(min=1e-10).log10_().mul_(20)

    if noise_clip is not None:
        clip = np.atleast_2d(np.asarray(noise_clip, np.float32))
        noise_stats = [_noise_stats(decibels(channel)) for channel in clip]
    else:
        # the quietest frames of all channels together: a first pass for the frame energies
        energy = sum(decibels(channel).mean(dim=0) for channel in x) / len(x)
        quiet = energy <= torch.quantile(energy, noise_quantile)
        noise_stats = None
    floor = 10 ** (-reduction_db / 20)
    out = np.empty_like(x)
    for c, channel in enumerate(x):
        spec = stft(torch.as_tensor(channel), n_fft, hop_length, window)
        db = spec.abs().clamp_(min=1e-10).log10_().mul_(20)
        mean, std = noise_stats[min(c, len(noise_stats) - 1)] if noise_stats else _noise_stats(db[:, quiet])
        keep = (db > mean + threshold_std * std).float()[None, None]
        del db
        # smooth the mask over 3 bins x 5 frames so isolated cells neither pass nor vanish alone (a box mean,
        # zeros past the edges: what a 3x5 convolution of ones/15 computes, without its 15x im2col buffer)
        gain = torch.nn.functional.avg_pool2d(keep, (3, 5), stride=1, padding=(1, 2), count_include_pad=True)
        gain = gain[0, 0].mul_(1 - floor).add_(floor)
        del keep
        out[c] = istft(spec.mul_(gain), n_fft, hop_length, window, length=x.shape[-1]).numpy()
    return out[0] if np.ndim(y) == 1 else out


def _noise_stats(db: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-bin mean and standard deviation (dB) of noise frames ``[bins, frames]``, each ``[bins, 1]``."""
    return db.mean(dim=-1, keepdim=True), db.std(dim=-1, keepdim=True).nan_to_num(0.0)
