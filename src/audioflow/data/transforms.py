"""What runs on whole batches after collation: the waveform augmentations and the feature, planned
once (a TimeStretch/PitchShift pair at the end of the chain moves inside a spectral feature) and
reseeded per batch, so a batch is the same whichever process or device makes it."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from .. import features as F
from ..augment import AddNoise, Compose, PitchShift, SpectralStretch, TimeStretch, Transform


def _members(augmentations: Any) -> list[nn.Module]:
    if augmentations is None:
        return []
    if isinstance(augmentations, Compose) and augmentations.p >= 1.0 and not augmentations.shuffle:
        return list(augmentations.transforms)
    if isinstance(augmentations, nn.Module):
        return [augmentations]
    return list(augmentations)


def _commutes_with_stretch(t: nn.Module) -> bool:
    """Generated noise at an SNR is statistically the same added before or after a stretch or pitch
    shift (stretched or warped white/coloured noise is still such noise at the same power)."""
    return isinstance(t, AddNoise) and t.bank is None


def _fusible_spectrum(feature: nn.Module | None) -> bool:
    spec = feature.melspec if isinstance(feature, F.MFCC) else feature
    return isinstance(spec, F.Spectrogram) and spec.power is not None and type(feature) in (
        F.Spectrogram, F.MelSpectrogram, F.LogMel, F.MFCC)


def plan(augmentations: Any, feature: nn.Module | None, fuse: bool = True) -> BatchTransform:
    """The batch transform: waveform augmentations, then the feature. With ``fuse``, a TimeStretch and/or
    PitchShift ending the chain (generated noise may follow them: it commutes) are done inside a spectral
    feature (:class:`~audioflow.augment.SpectralStretch`: no inverse STFT, no phase)."""
    members = _members(augmentations)
    fused = None
    if fuse and _fusible_spectrum(feature):
        tail = [m for m in members if not _commutes_with_stretch(m)]
        stretch = next((m for m in tail[-2:] if isinstance(m, TimeStretch) and not m.keep), None)
        shift = next((m for m in tail[-2:] if isinstance(m, PitchShift)), None)
        ending = [m for m in (stretch, shift) if m is not None]
        if ending and tail[-len(ending):] in (ending, ending[::-1]):
            rates = (stretch.min_rate, stretch.max_rate) if stretch else (1.0, 1.0)
            semis = (shift.min_semitones, shift.max_semitones) if shift else (0.0, 0.0)
            p = (stretch.p if stretch else 0.0, shift.p if shift else 0.0)
            fused = SpectralStretch(feature, *rates, *semis, p=p)
            members = [m for m in members if m is not stretch and m is not shift]
    chain = Compose(members) if members else None
    return BatchTransform(chain, fused if fused is not None else feature)


class BatchTransform(nn.Module):
    """``(x [batch, (channels,) time], lengths)`` → ``(out, out_lengths)``: augmentations then the
    feature (frames and frame lengths), or the augmented waveforms when there is no feature."""

    def __init__(self, augment: nn.Module | None, feature: nn.Module | None) -> None:
        super().__init__()
        self.augment, self.feature = augment, feature
        # every random member gets its own generator, so reseed() controls all of them
        for module in self.modules():
            if isinstance(module, (Transform, SpectralStretch)) and module.generator is None:
                module.generator = torch.Generator()

    @property
    def is_identity(self) -> bool:
        return self.augment is None and self.feature is None

    def reseed(self, seed: int) -> None:
        """Set every random member's generator from ``seed`` (its own stream per member)."""
        generators = [m.generator for m in self.modules() if isinstance(getattr(m, "generator", None), torch.Generator)]
        states = np.random.SeedSequence(seed).generate_state(max(1, len(generators)), np.uint64)
        for generator, state in zip(generators, states, strict=False):
            generator.manual_seed(int(state) & ((1 << 63) - 1))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.augment is not None:
            x, lengths = self.augment(x, lengths)
        if self.feature is not None:
            return self.feature(x, lengths)
        return x, lengths

    def describe(self) -> str:
        parts = [] if self.augment is None else [type(m).__name__ for m in self.augment.fused]
        if isinstance(self.feature, SpectralStretch):
            parts.append(f"SpectralStretch({type(self.feature.feature).__name__})")
        elif self.feature is not None:
            parts.append(type(self.feature).__name__)
        return " -> ".join(parts) or "none"
