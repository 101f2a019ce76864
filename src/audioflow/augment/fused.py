"""Stretch and pitch-shift inside a spectral feature: when the model consumes a (mel) spectrogram,
augmenting in the STFT domain skips the inverse STFT and the resample entirely."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..dsp import frame_lengths, mask_frames, phase_vocoder, stft
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

    Per item, with probability ``p``: a rate from ``[min_rate, max_rate]`` (phase vocoder on the
    STFT) and a shift from ``[min_semitones, max_semitones]`` (the power spectrum's frequency axis
    scaled by ``2^(semitones/12)``), then the feature's own projection (mel, log, DCT). Compared with
    ``Compose([TimeStretch, PitchShift])`` followed by the feature, it saves the inverse STFT, the
    resynthesis and the second STFT.

    Returns the features, and with ``lengths`` (samples) also the valid frames per item.
    """

    def __init__(self, feature: nn.Module, min_rate: float = 0.8, max_rate: float = 1.25,
                 min_semitones: float = 0.0, max_semitones: float = 0.0, p: float = 0.5,
                 seed: int | None = None) -> None:
        super().__init__()
        spec = feature.melspec if isinstance(feature, MFCC) else feature
        if not isinstance(spec, Spectrogram) or spec.power is None:
            raise ParameterError("SpectralStretch needs a Spectrogram, MelSpectrogram, LogMel or MFCC with a power")
        self.feature, self.spec = feature, spec
        self.min_rate, self.max_rate = min_rate, max_rate
        self.min_semitones, self.max_semitones, self.p = min_semitones, max_semitones, p
        self.generator = make_generator(seed)

    def draw(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        chosen = torch.rand(n, generator=self.generator) < self.p
        log_rate = torch.empty(n, dtype=torch.float64).uniform_(math.log(self.min_rate), math.log(self.max_rate),
                                                                generator=self.generator)
        semis = torch.empty(n, dtype=torch.float64).uniform_(self.min_semitones, self.max_semitones,
                                                             generator=self.generator)
        rate = torch.where(chosen, log_rate.exp(), torch.ones(n, dtype=torch.float64))
        return rate, torch.where(chosen, semis, torch.zeros(n, dtype=torch.float64))

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
        spec = stft(batch, spec_module.n_fft, spec_module.hop_length, window, spec_module.center,
                    spec_module.pad_mode)
        stretched = phase_vocoder(spec, rate.float(), spec_module.hop_length)
        power = stretched.abs().pow(spec_module.power) if spec_module.power != 2.0 else \
            stretched.real.square() + stretched.imag.square()
        if bool((semitones != 0).any()):
            power = warp_frequency(power, torch.pow(2.0, semitones / 12.0).to(power.device))
        valid = frame_lengths(lens, spec_module.n_fft, spec_module.hop_length, spec_module.center)
        frames = torch.ceil(valid.double() / rate).long().clamp(max=power.shape[-1]).to(power.device)
        power = mask_frames(power, frames)
        if isinstance(self.feature, (MelSpectrogram, MFCC)):
            out = torch.matmul(spec_module.fb.to(power.dtype), power)
            if isinstance(self.feature, (LogMel, MFCC)):
                out = self.feature.from_mel(out, frames)
        else:
            out = power
        return mask_frames(out, frames), frames
