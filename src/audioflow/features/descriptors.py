"""Spectral descriptors for the music layer, batched on tensors, with librosa's definitions.

Spectrogram inputs are ``[..., freq, frames]`` (magnitude unless said otherwise); signal inputs are
``[..., time]``. Outputs keep a feature axis of size 1 (``[..., 1, frames]``), as librosa's do.
"""

from __future__ import annotations

import itertools
from functools import lru_cache

import numpy as np
import torch

_TINY = torch.finfo(torch.float32).tiny


def fft_frequencies(sample_rate: int, n_fft: int, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """Centre frequency (Hz) of each rFFT bin: ``[n_fft // 2 + 1]``."""
    return torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, device=device, dtype=dtype)


def _l1_normalise(S: torch.Tensor) -> torch.Tensor:
    total = S.abs().sum(-2, keepdim=True)
    return S / torch.where(total < _TINY, torch.ones_like(total), total)


def spectral_centroid(S: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """Magnitude-weighted mean frequency per frame, in Hz."""
    return (freqs[:, None] * _l1_normalise(S)).sum(-2, keepdim=True)


def spectral_bandwidth(S: torch.Tensor, freqs: torch.Tensor, p: float = 2.0,
                       centroid: torch.Tensor | None = None) -> torch.Tensor:
    """p-th order spread around the centroid, in Hz."""
    centroid = spectral_centroid(S, freqs) if centroid is None else centroid
    deviation = (freqs[:, None] - centroid).abs()
    return (_l1_normalise(S) * deviation**p).sum(-2, keepdim=True) ** (1.0 / p)


def spectral_rolloff(S: torch.Tensor, freqs: torch.Tensor, roll_percent: float = 0.85) -> torch.Tensor:
    """Lowest frequency (Hz) below which ``roll_percent`` of the frame's magnitude lies."""
    cumulative = torch.cumsum(S, dim=-2)
    threshold = roll_percent * cumulative[..., -1:, :]
    above = cumulative >= threshold
    first = torch.argmax(above.to(torch.int8), dim=-2, keepdim=True)
    return freqs[first]


def spectral_flatness(S: torch.Tensor, power: float = 2.0, amin: float = 1e-10) -> torch.Tensor:
    """Geometric over arithmetic mean of ``S ** power`` per frame (1: white noise, ~0: a tone)."""
    s = S.pow(power).clamp(min=amin)
    return torch.exp(torch.log(s).mean(-2, keepdim=True)) / s.mean(-2, keepdim=True)


def spectral_contrast(S: torch.Tensor, sample_rate: int, n_fft: int, fmin: float = 200.0, n_bands: int = 6,
                      quantile: float = 0.02, linear: bool = False) -> torch.Tensor:
    """Peak-to-valley contrast in octave bands (librosa's): ``[..., n_bands + 1, frames]`` in dB."""
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    octaves = np.zeros(n_bands + 2)
    octaves[1:] = fmin * 2.0 ** np.arange(n_bands + 1)
    peaks, valleys = [], []
    for k, (lo, hi) in enumerate(itertools.pairwise(octaves)):
        band = (freqs >= lo) & (freqs <= hi)
        idx = np.flatnonzero(band)
        if k > 0:
            band[idx[0] - 1] = True
        if k == n_bands:
            band[idx[-1] + 1:] = True
        rows = np.flatnonzero(band)
        if k < n_bands:
            rows = rows[:-1]
        n_quant = max(int(np.rint(quantile * band.sum())), 1)
        sub = torch.sort(S[..., torch.as_tensor(rows, device=S.device), :], dim=-2).values
        valleys.append(sub[..., :n_quant, :].mean(-2))
        peaks.append(sub[..., -n_quant:, :].mean(-2))
    peak, valley = torch.stack(peaks, -2), torch.stack(valleys, -2)
    if linear:
        return peak - valley
    from .base import power_to_db

    batch_dims = peak.ndim - 2
    return power_to_db(peak, batch_dims=batch_dims) - power_to_db(valley, batch_dims=batch_dims)


def _frames(y: torch.Tensor, frame_length: int, hop_length: int, center: bool, pad_mode: str) -> torch.Tensor:
    if center:
        shape = y.shape
        y = torch.nn.functional.pad(y.reshape(-1, 1, shape[-1]), (frame_length // 2, frame_length // 2),
                                    mode="replicate" if pad_mode == "edge" else pad_mode)
        y = y.reshape(*shape[:-1], y.shape[-1])
    return y.unfold(-1, frame_length, hop_length)  # [..., frames, frame_length]


def zero_crossing_rate(y: torch.Tensor, frame_length: int = 2048, hop_length: int = 512, center: bool = True,
                       threshold: float = 1e-10) -> torch.Tensor:
    """Fraction of sign changes per frame (|y| <= ``threshold`` counts as 0, and 0 as positive)."""
    frames = _frames(y, frame_length, hop_length, center, "edge")
    negative = torch.signbit(torch.where(frames.abs() <= threshold, torch.zeros_like(frames), frames))
    crossings = (negative[..., 1:] != negative[..., :-1]).sum(-1, dtype=torch.float32) / frame_length
    return crossings[..., None, :]


def rms(y: torch.Tensor, frame_length: int = 2048, hop_length: int = 512, center: bool = True,
        pad_mode: str = "constant") -> torch.Tensor:
    """Root-mean-square of each frame."""
    frames = _frames(y, frame_length, hop_length, center, pad_mode)
    return frames.square().mean(-1).sqrt()[..., None, :]


@lru_cache(maxsize=16)
def _chroma_np(sample_rate: int, n_fft: int, n_chroma: int, tuning: float, ctroct: float,
               octwidth: float) -> np.ndarray:
    frequencies = np.linspace(0, sample_rate, n_fft, endpoint=False)[1:]
    a440 = 440.0 * 2.0 ** (tuning / n_chroma)
    frqbins = n_chroma * np.log2(frequencies / (a440 / 16))
    frqbins = np.concatenate(([frqbins[0] - 1.5 * n_chroma], frqbins))
    binwidth = np.concatenate((np.maximum(frqbins[1:] - frqbins[:-1], 1.0), [1]))
    d = np.subtract.outer(frqbins, np.arange(0, n_chroma, dtype="d")).T
    half = np.round(float(n_chroma) / 2)
    d = np.remainder(d + half + 10 * n_chroma, n_chroma) - half
    wts = np.exp(-0.5 * (2 * d / np.tile(binwidth, (n_chroma, 1))) ** 2)
    norms = np.sqrt((wts**2).sum(axis=0, keepdims=True))
    wts = wts / np.where(norms < np.finfo(np.float64).tiny, 1.0, norms)
    wts *= np.tile(np.exp(-0.5 * (((frqbins / n_chroma - ctroct) / octwidth) ** 2)), (n_chroma, 1))
    wts = np.roll(wts, -3 * (n_chroma // 12), axis=0)
    return np.ascontiguousarray(wts[:, : int(1 + n_fft / 2)])


def chroma_filterbank(sample_rate: int, n_fft: int, n_chroma: int = 12, tuning: float = 0.0, ctroct: float = 5.0,
                      octwidth: float = 2.0, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """librosa.filters.chroma: ``[n_chroma, n_fft // 2 + 1]``, starting at C."""
    return torch.as_tensor(_chroma_np(int(sample_rate), int(n_fft), int(n_chroma), float(tuning), float(ctroct),
                                      float(octwidth)), device=device, dtype=dtype)


def chroma_stft(S_power: torch.Tensor, sample_rate: int, n_fft: int, n_chroma: int = 12,
                tuning: float = 0.0) -> torch.Tensor:
    """Chromagram ``[..., n_chroma, frames]`` from a power spectrogram, each frame scaled to max 1.

    ``tuning`` (fractions of a bin) is given, not estimated: librosa estimates it when left None,
    so compare with ``librosa.feature.chroma_stft(..., tuning=0.0)``.
    """
    fb = chroma_filterbank(sample_rate, n_fft, n_chroma, tuning, device=S_power.device, dtype=S_power.dtype)
    chroma = torch.matmul(fb, S_power)
    peak = chroma.abs().amax(-2, keepdim=True)
    return chroma / torch.where(peak < _TINY, torch.ones_like(peak), peak)


__all__ = ["chroma_filterbank", "chroma_stft", "fft_frequencies", "rms", "spectral_bandwidth", "spectral_centroid",
           "spectral_contrast", "spectral_flatness", "spectral_rolloff", "zero_crossing_rate"]
