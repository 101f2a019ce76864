"""Shared plumbing of the feature modules: input shapes and ``lengths``."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..dsp import frame_lengths, mask_frames
from ..errors import ParameterError


def check_positive(owner: str, **values: float | None) -> None:
    """Constructor arguments that must be positive numbers (None: not given), checked when the module is built
    with the parameter named, not at the first batch."""
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ParameterError(f"{owner}: {name} must be a positive number, got {value!r}")


class FeatureModule(nn.Module):
    """Takes ``[time]``, ``[batch, time]`` or ``[batch, channels, time]`` and optional ``lengths``
    (``[batch]`` valid samples); returns features ``[..., feature, frames]``, and with ``lengths``
    given also the frames each sample fills (frames past them are zero)."""

    n_fft: int
    hop_length: int
    center: bool

    def output_lengths(self, lengths: torch.Tensor, n_frames: int) -> torch.Tensor:
        return frame_lengths(lengths, self.n_fft, self.hop_length, self.center, n_frames)

    def finish(self, out: torch.Tensor, lengths: torch.Tensor | None):
        if lengths is None:
            return out
        frames = self.output_lengths(lengths.to(out.device), out.shape[-1])
        return mask_frames(out, frames), frames


def power_to_db(x: torch.Tensor, top_db: float | None = 80.0, amin: float = 1e-10, ref: float = 1.0,
                multiplier: float = 10.0, batch_dims: int = 1) -> torch.Tensor:
    """``multiplier * log10(max(amin, x) / ref)``, floored at ``top_db`` below each sample's maximum
    (the maximum is taken per item of the first ``batch_dims`` axes, as librosa does per array)."""
    db = torch.log10(x.clamp(min=amin)).mul_(multiplier)  # a fresh tensor: in place is safe (decibels_ on a copy)
    if ref != 1.0:
        db = db - multiplier * math.log10(max(amin, ref))
    return floor_db_(db, top_db, batch_dims)


def decibels_(power: torch.Tensor, amin: float = 1e-10, multiplier: float = 10.0) -> torch.Tensor:
    """``multiplier * log10(max(amin, power))``, in place (for a fresh tensor, e.g. one chunk of a mel
    spectrogram while it is in cache)."""
    return power.clamp_(min=amin).log10_().mul_(multiplier)


def floor_db_(db: torch.Tensor, top_db: float | None, batch_dims: int = 1) -> torch.Tensor:
    """Decibels floored ``top_db`` below the maximum of each item of the first ``batch_dims`` axes, in place."""
    if top_db is None:
        return db
    dims = tuple(range(batch_dims, db.ndim))
    peak = db.amax(dim=dims, keepdim=True) if dims else db.max()
    return db.clamp_(min=peak - top_db)
