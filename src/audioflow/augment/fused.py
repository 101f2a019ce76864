"""Stretch and pitch-shift inside a spectral feature: when the model consumes a (mel) spectrogram,
augmenting in the STFT domain skips the inverse STFT and the resample entirely."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..dsp import frame_lengths, mask_frames, stft_frames, stretch_frames
from ..errors import ParameterError
from ..features import MFCC, LogMel, MelSpectrogram, Spectrogram
from .base import make_generator

_CPU_CHUNK = 2


def warp_frequency(power: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Move every partial of ``power [batch, freq, frames]`` from ``f`` to ``f * factor[b]`` (linear
    interpolation along the frequency axis; content pushed past Nyquist is dropped)."""
    batch, freq, frames = power.shape
    source = torch.arange(freq, device=power.device, dtype=power.dtype)[None, :] / factor[:, None].to(power.dtype)
    low = source.floor().long()
    frac = (source - low)[:, :, None]
    inside = (low < freq - 1)[:, :, None]
    low = low.clamp(max=freq - 2)
    index = low[:, :, None].expand(batch, freq, frames)
    warped = torch.lerp(torch.gather(power, 1, index), torch.gather(power, 1, index + 1), frac)
    return warped * inside


class SpectralStretch(nn.Module):
    """A feature module (:class:`~audioflow.features.Spectrogram`, ``MelSpectrogram``, ``LogMel`` or
    ``MFCC``) computed on time-stretched and pitch-shifted audio, without leaving the STFT domain.

    Per item, with probability ``p`` (or ``(p_rate, p_shift)``, each drawn on its own): a rate from
    ``[min_rate, max_rate]`` (the phase vocoder's time grid: each output frame interpolates two input frames'
    power, which a power feature needs no phase for; the vocoder interpolates magnitudes, a second-order
    difference) and a shift from ``[min_semitones, max_semitones]`` (the power spectrum's frequency
    axis scaled by ``2^(semitones/12)``, folded into each item's mel matrix), then the feature's own
    projection (mel, log, DCT). Compared with ``Compose([TimeStretch, PitchShift])`` followed by the
    feature, it saves the phase accumulation, the inverse STFT, the resynthesis and the second STFT.

    Returns the features, and with ``lengths`` (samples) also the valid frames per item.
    """

    def __init__(self, feature: nn.Module, min_rate: float = 0.8, max_rate: float = 1.25,
                 min_semitones: float = 0.0, max_semitones: float = 0.0, p: float | tuple[float, float] = 0.5,
                 seed: int | None = None) -> None:
        super().__init__()
        spec = feature.melspec if isinstance(feature, MFCC) else feature
        if not isinstance(spec, Spectrogram) or spec.power is None:
            raise ParameterError("SpectralStretch needs a Spectrogram, MelSpectrogram, LogMel or MFCC with a power")
        self.feature, self.spec = feature, spec
        self.min_rate, self.max_rate = min_rate, max_rate
        self.min_semitones, self.max_semitones, self.p = min_semitones, max_semitones, p
        self.p_rate, self.p_shift = (p, p) if isinstance(p, (int, float)) else p
        self.generator = make_generator(seed)

    def draw(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        chosen_rate = torch.rand(n, generator=self.generator) < self.p_rate
        chosen_shift = chosen_rate if self.p_shift == self.p_rate else \
            torch.rand(n, generator=self.generator) < self.p_shift
        log_rate = torch.empty(n, dtype=torch.float64).uniform_(math.log(self.min_rate), math.log(self.max_rate),
                                                                generator=self.generator)
        semis = torch.empty(n, dtype=torch.float64).uniform_(self.min_semitones, self.max_semitones,
                                                             generator=self.generator)
        rate = torch.where(chosen_rate, log_rate.exp(), torch.ones(n, dtype=torch.float64))
        return rate, torch.where(chosen_shift, semis, torch.zeros(n, dtype=torch.float64))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None):
        batch = x.reshape(-1, x.shape[-1])
        n = batch.shape[0]
        rate, semitones = self.draw(n)
        self.last_rate, self.last_semitones = rate, semitones
        lens = torch.full((n,), batch.shape[-1]) if lengths is None else lengths.cpu().reshape(-1)
        if batch.device.type == "cpu" and n > _CPU_CHUNK:
            # a couple of items at a time keep the STFT intermediates in cache (~4x per item at 32)
            parts = [self._features(batch[i:i + _CPU_CHUNK], lens[i:i + _CPU_CHUNK], rate[i:i + _CPU_CHUNK],
                                    semitones[i:i + _CPU_CHUNK]) for i in range(0, n, _CPU_CHUNK)]
            size = max(p[0].shape[-1] for p in parts)
            out = torch.cat([torch.nn.functional.pad(p[0], (0, size - p[0].shape[-1])) for p in parts])
            frames = torch.cat([p[1] for p in parts])
        else:
            out, frames = self._features(batch, lens, rate, semitones)
        out = out.reshape(*x.shape[:-1], *out.shape[-2:])
        return out if lengths is None else (out, frames)

    def _features(self, batch: torch.Tensor, lens: torch.Tensor, rate: torch.Tensor,
                  semitones: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        spec_module = self.spec
        window = spec_module.window.to(batch.dtype)
        spec = stft_frames(batch, spec_module.n_fft, spec_module.hop_length, window, spec_module.center,
                           spec_module.pad_mode)
        # the feature keeps only the power, so no phase is needed: frames are interpolated in power, which
        # commutes with the (linear) mel projection and pitch warp, so it runs on the few mel rows
        power = spec.real.square() + spec.imag.square()  # [B, frames, freq]
        if spec_module.power != 2.0:
            power = power.pow_(spec_module.power / 2)
        valid = frame_lengths(lens, spec_module.n_fft, spec_module.hop_length, spec_module.center)
        shifted = bool((semitones != 0).any())
        factor = torch.pow(2.0, semitones / 12.0).to(power.device)
        if isinstance(self.feature, (MelSpectrogram, MFCC)):
            fb = spec_module.fb.to(power.dtype)
            # the pitch warp is linear in the power too: folded into each item's mel matrix
            mel = torch.matmul(power, (warp_filterbank(fb, factor) if shifted else fb).transpose(-1, -2))
            out = stretch_frames(mel, rate).transpose(-1, -2)
        else:
            out = stretch_frames(power, rate).transpose(-1, -2)
            out = warp_frequency(out, factor) if shifted else out
        frames = torch.ceil(valid.double() / rate).long().clamp(max=out.shape[-1]).to(out.device)
        out = mask_frames(out, frames)
        if isinstance(self.feature, (LogMel, MFCC)):
            out = self.feature.from_mel(out, frames)
        return mask_frames(out, frames), frames


def warp_filterbank(fb: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``[batch, n_mels, freq]``: ``fb [n_mels, freq]`` applied after :func:`warp_frequency` by
    ``factor[b]``, as one matrix per item (``warp_filterbank(fb, k) @ p == fb @ warp_frequency(p, k)``)."""
    n_mels, freq = fb.shape
    batch = factor.shape[0]
    source = torch.arange(freq, device=fb.device, dtype=fb.dtype)[None, :] / factor[:, None].to(fb.dtype)
    low = source.floor().long()
    frac = source - low
    inside = (low < freq - 1).to(fb.dtype)
    low = low.clamp(max=freq - 2)
    weighted = fb[None] * inside[:, None, :]  # [B, M, F]: each output bin f reads bins low[f], low[f] + 1
    index = low[:, None, :].expand(batch, n_mels, freq)
    out = torch.zeros(batch, n_mels, freq, device=fb.device, dtype=fb.dtype)
    out.scatter_add_(2, index, weighted * (1 - frac)[:, None, :])
    out.scatter_add_(2, index + 1, weighted * frac[:, None, :])
    return out
