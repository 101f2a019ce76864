"""Filtering in the frequency domain: zero-phase magnitude responses and fast convolution, batched
with a different filter per sample."""

from __future__ import annotations

import torch


def butterworth_response(freqs: torch.Tensor, cutoff: torch.Tensor, order: torch.Tensor | float,
                         kind: str) -> torch.Tensor:
    """Butterworth magnitude ``[batch, freq]`` at ``freqs [freq]`` (Hz) for per-sample ``cutoff`` and
    ``order`` (a number or ``[batch]``; the roll-off is 6 dB per octave per order).

    ``kind``: 'lowpass' or 'highpass' (``cutoff [batch]``), 'bandpass' or 'bandstop'
    (``cutoff [batch, 2]``: low and high edges). Every edge is at -3 dB (|H| = 1/sqrt(2)).
    """
    f = freqs[None, :].clamp(min=1e-6)
    order = torch.as_tensor(order, dtype=freqs.dtype, device=freqs.device).reshape(-1, 1)
    if kind in ("lowpass", "highpass"):
        ratio = f / cutoff.reshape(-1, 1)
        ratio = ratio if kind == "lowpass" else 1 / ratio
        return torch.rsqrt(1 + ratio ** (2 * order))
    # the analog low-pass to band transformation: Omega = (f^2 - f0^2) / (f B), f0 = sqrt(low high),
    # B = high - low; |Omega| = 1 exactly at both edges, so both sit at -3 dB
    low, high = cutoff[:, :1], cutoff[:, 1:]
    omega = (f.square() - low * high) / (f * (high - low))
    if kind == "bandpass":
        return torch.rsqrt(1 + omega.abs() ** (2 * order))
    if kind == "bandstop":
        return torch.rsqrt(1 + omega.abs().clamp(min=1e-12) ** (-2 * order))
    raise ValueError(f"unknown filter kind {kind!r}")


def fft_filter(x: torch.Tensor, response: torch.Tensor, pad: int = 2048) -> torch.Tensor:
    """Apply a real, zero-phase frequency response to ``x [batch, time]``.

    ``response`` is ``[batch, n // 2 + 1]`` sampled on ``torch.fft.rfftfreq(n)`` with
    ``n = filter_length(time, pad)``; the zero padding keeps the filter's ringing from wrapping
    around the ends.
    """
    n = filter_length(x.shape[-1], pad)
    spec = torch.fft.rfft(x, n=n, dim=-1) * response
    return torch.fft.irfft(spec, n=n, dim=-1)[..., : x.shape[-1]]


def filter_length(time: int, pad: int = 2048) -> int:
    """FFT size for :func:`fft_filter`: at least ``time + pad``, rounded up to a fast size."""
    from .resample import next_fast_len

    return next_fast_len(time + pad)


def fft_convolve(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Linear convolution of ``x [batch, time]`` with ``kernel [batch, k]``, first ``time`` samples."""
    from .resample import next_fast_len

    n = next_fast_len(x.shape[-1] + kernel.shape[-1] - 1)
    spec = torch.fft.rfft(x, n=n, dim=-1) * torch.fft.rfft(kernel, n=n, dim=-1)
    return torch.fft.irfft(spec, n=n, dim=-1)[..., : x.shape[-1]]
