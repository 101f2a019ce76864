"""Windows, STFT/ISTFT and the phase vocoder."""

from __future__ import annotations

import math

import torch

from ..errors import ParameterError

_WINDOWS = ("hann", "hamming", "blackman", "povey", "rectangular", "boxcar", "ones")


def get_window(name: str, length: int, periodic: bool = True, *, device: torch.device | str | None = None,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A window of ``length`` samples: 'hann', 'hamming', 'blackman', 'povey' (Kaldi) or 'rectangular'.

    ``periodic=True`` gives the DFT-even window that librosa and torch.stft use; Kaldi's windows are
    symmetric (``periodic=False``).
    """
    name = name.lower()
    if name == "hann":
        return torch.hann_window(length, periodic=periodic, device=device, dtype=dtype)
    if name == "hamming":
        return torch.hamming_window(length, periodic=periodic, device=device, dtype=dtype)
    if name == "blackman":
        return torch.blackman_window(length, periodic=periodic, device=device, dtype=dtype)
    if name == "povey":  # Kaldi: a Hann window raised to 0.85, symmetric
        return torch.hann_window(length, periodic=False, device=device, dtype=torch.float64).pow(0.85).to(dtype)
    if name in ("rectangular", "boxcar", "ones"):
        return torch.ones(length, device=device, dtype=dtype)
    raise ParameterError(f"unknown window {name!r}; use one of {', '.join(_WINDOWS)}")


def stft(x: torch.Tensor, n_fft: int, hop_length: int, window: torch.Tensor, center: bool = True,
         pad_mode: str = "constant") -> torch.Tensor:
    """Complex STFT of ``x [..., time]`` → ``[..., n_fft // 2 + 1, frames]``.

    ``window`` may be shorter than ``n_fft`` (it is centred, as librosa does). With ``center`` the
    signal is padded by ``n_fft // 2`` on both sides so frame ``t`` is centred on sample
    ``t * hop_length``.
    """
    shape = x.shape
    flat = x.reshape(-1, shape[-1])
    if center and pad_mode == "reflect" and shape[-1] <= n_fft // 2:
        pad_mode = "constant"  # reflection needs more samples than the pad; short clips get zeros
    spec = torch.stft(flat, n_fft, hop_length, window.shape[-1], window, center=center, pad_mode=pad_mode,
                      return_complex=True)
    return spec.reshape(*shape[:-1], *spec.shape[-2:])


def istft(spec: torch.Tensor, n_fft: int, hop_length: int, window: torch.Tensor, length: int | None = None,
          center: bool = True) -> torch.Tensor:
    """Inverse of :func:`stft`: ``[..., freq, frames]`` → ``[..., time]`` (``length`` samples if given)."""
    shape = spec.shape
    flat = spec.reshape(-1, *shape[-2:])
    y = torch.istft(flat, n_fft, hop_length, window.shape[-1], window, center=center, length=length)
    return y.reshape(*shape[:-2], y.shape[-1])


def phase_vocoder(spec: torch.Tensor, rate: torch.Tensor | float, hop_length: int,
                  n_frames: int | None = None) -> torch.Tensor:
    """Time-scale a complex STFT by ``rate`` (> 1 is faster/shorter), keeping each bin's frequency.

    Args:
        spec: complex ``[batch, freq, frames]``.
        rate: one rate, or ``[batch]`` rates (each sample its own).
        hop_length: STFT hop in samples (sets the expected phase advance per bin).
        n_frames: output frames (default: enough for the slowest sample in the batch).

    Returns:
        Complex ``[batch, freq, n_frames]``; sample ``b`` holds ``ceil(frames / rate[b])`` valid
        frames, the rest zeros. This is librosa's ``phase_vocoder`` run for every sample at once:
        the magnitude is interpolated between neighbouring frames and the phase accumulated.
    """
    batch, freq, frames = spec.shape
    device = spec.device
    rate = torch.as_tensor(rate, dtype=torch.float32, device=device).reshape(-1).expand(batch)
    valid = torch.ceil(frames / rate).long()
    n_out = int(valid.max()) if n_frames is None else n_frames
    steps = torch.arange(n_out, device=device, dtype=torch.float32)[None, :] * rate[:, None]  # [B, T]
    in_range = steps < frames
    # pad two zero frames so frame t+1 exists at the end (librosa pads the same way)
    padded = torch.nn.functional.pad(spec, (0, 2))
    idx0 = steps.floor().long().clamp(max=frames)
    frac = (steps - idx0).unsqueeze(1)  # [B, 1, T]
    gather = lambda idx: torch.gather(padded, 2, idx.unsqueeze(1).expand(batch, freq, n_out))  # noqa: E731
    col0, col1 = gather(idx0), gather(idx0 + 1)
    mag = (1 - frac) * col0.abs() + frac * col1.abs()
    expected = torch.linspace(0, math.pi * hop_length, freq, device=device)[None, :, None]
    dphase = torch.angle(col1) - torch.angle(col0) - expected
    dphase = dphase - 2 * math.pi * torch.round(dphase / (2 * math.pi))
    # wrapped to [0, 2pi) before summing: float32 keeps ~1e-3 rad after thousands of frames
    advance = torch.remainder(dphase + expected, 2 * math.pi)
    # the phase of output frame t is the first frame's phase plus the advances of frames before t
    phase = torch.angle(spec[:, :, :1]) + torch.cumsum(advance, dim=2) - advance
    out = torch.polar(mag, phase)
    return out * in_range.unsqueeze(1)
