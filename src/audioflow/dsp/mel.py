"""Mel scales and filter banks (librosa's and Kaldi's), and the DCT matrix for MFCCs.

Banks are computed once in float64 with NumPy, exactly as librosa does, and cached; modules turn
them into buffers on the device they live on.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from ..errors import ParameterError

_F_SP = 200.0 / 3  # Slaney: linear below 1 kHz, 3 mels per 200 Hz
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = math.log(6.4) / 27.0


def hz_to_mel(freqs: np.ndarray | float, mel_scale: str = "slaney") -> np.ndarray:
    """Hz to mels: 'htk' (2595 log10(1 + f/700)), 'kaldi' (1127 ln(1 + f/700)) or 'slaney' (librosa's default)."""
    f = np.asarray(freqs, dtype=np.float64)
    if mel_scale == "htk":
        return 2595.0 * np.log10(1.0 + f / 700.0)
    if mel_scale == "kaldi":
        return 1127.0 * np.log(1.0 + f / 700.0)
    if mel_scale != "slaney":
        raise ParameterError(f"mel_scale must be 'slaney', 'htk' or 'kaldi', got {mel_scale!r}")
    mels = f / _F_SP
    log_part = f >= _MIN_LOG_HZ
    return np.where(log_part, _MIN_LOG_MEL + np.log(np.maximum(f, 1e-10) / _MIN_LOG_HZ) / _LOGSTEP, mels)


def mel_to_hz(mels: np.ndarray | float, mel_scale: str = "slaney") -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    m = np.asarray(mels, dtype=np.float64)
    if mel_scale == "htk":
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    if mel_scale == "kaldi":
        return 700.0 * (np.exp(m / 1127.0) - 1.0)
    if mel_scale != "slaney":
        raise ParameterError(f"mel_scale must be 'slaney', 'htk' or 'kaldi', got {mel_scale!r}")
    return np.where(m >= _MIN_LOG_MEL, _MIN_LOG_HZ * np.exp(_LOGSTEP * (m - _MIN_LOG_MEL)), _F_SP * m)


def mel_frequencies(n_mels: int, f_min: float, f_max: float, mel_scale: str = "slaney") -> np.ndarray:
    """``n_mels`` frequencies (Hz) evenly spaced on the mel scale from ``f_min`` to ``f_max``."""
    return mel_to_hz(np.linspace(hz_to_mel(f_min, mel_scale), hz_to_mel(f_max, mel_scale), n_mels), mel_scale)


@lru_cache(maxsize=64)
def _mel_filterbank_np(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float,
                       norm: str | None, mel_scale: str) -> np.ndarray:
    fftfreqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    mel_f = mel_frequencies(n_mels + 2, f_min, f_max, mel_scale)
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fftfreqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    if norm == "slaney":  # constant energy per band
        weights *= (2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels]))[:, None]
    elif norm is not None:
        raise ParameterError(f"norm must be 'slaney' or None, got {norm!r}")
    return weights


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int = 128, f_min: float = 0.0,
                   f_max: float | None = None, norm: str | None = "slaney", mel_scale: str = "slaney",
                   *, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Triangular mel filters ``[n_mels, n_fft // 2 + 1]``, identical to ``librosa.filters.mel``.

    Args:
        sample_rate: Hz. n_fft: FFT size in samples. n_mels: number of bands.
        f_min, f_max: lowest and highest band edges in Hz (``f_max=None``: Nyquist).
        norm: 'slaney' (area normalisation, librosa's default) or None (peak 1, torchaudio's default).
        mel_scale: 'slaney' (librosa's default) or 'htk' (torchaudio's default).
    """
    f_max = sample_rate / 2 if f_max is None else f_max
    if not 0 <= f_min < f_max <= sample_rate / 2 + 1e-9:
        raise ParameterError(f"need 0 <= f_min < f_max <= sample_rate / 2, got f_min={f_min}, f_max={f_max}")
    bank = _mel_filterbank_np(int(sample_rate), int(n_fft), int(n_mels), float(f_min), float(f_max), norm,
                              mel_scale)
    return torch.as_tensor(bank, dtype=dtype, device=device)


@lru_cache(maxsize=32)
def _kaldi_banks_np(n_mels: int, padded_window: int, sample_rate: float, low_freq: float,
                    high_freq: float) -> np.ndarray:
    n_bins = padded_window // 2
    nyquist = 0.5 * sample_rate
    if high_freq <= 0.0:
        high_freq += nyquist
    fft_bin_width = sample_rate / padded_window
    mel_low, mel_high = hz_to_mel(low_freq, "kaldi"), hz_to_mel(high_freq, "kaldi")
    delta = (mel_high - mel_low) / (n_mels + 1)
    left = mel_low + np.arange(n_mels)[:, None] * delta
    center, right = left + delta, left + 2 * delta
    mel = hz_to_mel(fft_bin_width * np.arange(n_bins), "kaldi")[None, :]
    up, down = (mel - left) / (center - left), (right - mel) / (right - center)
    bank = np.maximum(0.0, np.minimum(up, down))
    return np.pad(bank, ((0, 0), (0, 1)))  # the Nyquist bin gets no weight, as in Kaldi


def kaldi_mel_banks(n_mels: int, padded_window: int, sample_rate: float, low_freq: float = 20.0,
                    high_freq: float = 0.0, *, device: torch.device | str | None = None,
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Kaldi's mel banks ``[n_mels, padded_window // 2 + 1]`` (``high_freq <= 0`` counts from Nyquist)."""
    bank = _kaldi_banks_np(int(n_mels), int(padded_window), float(sample_rate), float(low_freq), float(high_freq))
    return torch.as_tensor(bank, dtype=dtype, device=device)


def create_dct(n_mfcc: int, n_mels: int, norm: str | None = "ortho", *, device: torch.device | str | None = None,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """DCT-II matrix ``[n_mels, n_mfcc]``: ``mels @ dct`` gives the coefficients (scipy's ``dct(type=2)``)."""
    n = np.arange(n_mels, dtype=np.float64)
    k = np.arange(n_mfcc, dtype=np.float64)[:, None]
    dct = 2.0 * np.cos(np.pi / n_mels * (n + 0.5) * k)  # [n_mfcc, n_mels], scipy's unnormalised DCT-II
    if norm == "ortho":
        dct[0] *= 1.0 / math.sqrt(4 * n_mels)
        dct[1:] *= 1.0 / math.sqrt(2 * n_mels)
    elif norm is not None:
        raise ParameterError(f"norm must be 'ortho' or None, got {norm!r}")
    return torch.as_tensor(dct.T, dtype=dtype, device=device)
