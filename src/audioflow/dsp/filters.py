"""Filtering in the frequency domain: zero-phase magnitude responses and fast convolution, batched
with a different filter per sample."""

from __future__ import annotations

import torch


def butterworth_response(freqs: torch.Tensor, cutoff: torch.Tensor, order: int, kind: str) -> torch.Tensor:
    """Butterworth magnitude ``[batch, freq]`` at ``freqs [freq]`` (Hz) for per-sample ``cutoff``.

    ``kind``: 'lowpass' or 'highpass' (``cutoff [batch]``), 'bandpass' or 'bandstop'
    (``cutoff [batch, 2]``: low and high edges). Every edge is at -3 dB (|H| = 1/sqrt(2)).
    """
    f = freqs[None, :].clamp(min=1e-6)
    if kind in ("lowpass", "highpass"):
        ratio = f / cutoff.reshape(-1, 1)
        ratio = ratio if kind == "lowpass" else 1 / ratio
        return torch.rsqrt(1 + ratio ** (2 * order))
    low, high = cutoff[:, :1], cutoff[:, 1:]
    passband = torch.rsqrt(1 + (low / f) ** (2 * order)) * torch.rsqrt(1 + (f / high) ** (2 * order))
    if kind == "bandpass":
        return passband
    if kind == "bandstop":
        return torch.sqrt((1 - passband**2).clamp(min=0))
    raise ValueError(f"unknown filter kind {kind!r}")


def fft_filter(x: torch.Tensor, response: torch.Tensor, pad: int = 2048) -> torch.Tensor:
    """Apply a real, zero-phase frequency response to ``x [batch, time]``.

    ``response`` is ``[batch, pad_len // 2 + 1]`` sampled on ``torch.fft.rfftfreq(pad_len)`` with
    ``pad_len = time + pad`` (see :func:`filter_length`); the zero padding keeps the filter's ringing
    from wrapping around the ends.
    """
    n = x.shape[-1] + pad
    spec = torch.fft.rfft(x, n=n, dim=-1) * response
    return torch.fft.irfft(spec, n=n, dim=-1)[..., : x.shape[-1]]


def filter_length(time: int, pad: int = 2048) -> int:
    return time + pad


def fft_convolve(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Linear convolution of ``x [batch, time]`` with ``kernel [batch, k]``, first ``time`` samples."""
    n = x.shape[-1] + kernel.shape[-1] - 1
    spec = torch.fft.rfft(x, n=n, dim=-1) * torch.fft.rfft(kernel, n=n, dim=-1)
    return torch.fft.irfft(spec, n=n, dim=-1)[..., : x.shape[-1]]
