"""Variable-length batches: how many frames each sample fills, and masks for the rest."""

from __future__ import annotations

import torch


def frame_lengths(lengths: torch.Tensor, n_fft: int, hop_length: int, center: bool = True,
                  n_frames: int | None = None) -> torch.Tensor:
    """Frames an STFT yields for samples of ``lengths`` (samples): ``1 + len // hop`` with ``center``,
    ``1 + (len - n_fft) // hop`` without; clipped to ``n_frames`` when given."""
    if center:
        frames = 1 + torch.div(lengths, hop_length, rounding_mode="floor")
    else:
        frames = 1 + torch.div((lengths - n_fft).clamp(min=-1), hop_length, rounding_mode="floor")
        frames = frames.clamp(min=0)
    return frames if n_frames is None else frames.clamp(max=n_frames)


def time_mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
    """``[batch, size]`` booleans, True where the position is inside the sample."""
    return torch.arange(size, device=lengths.device)[None, :] < lengths[:, None]


def mask_frames(x: torch.Tensor, lengths: torch.Tensor | None, value: float = 0.0) -> torch.Tensor:
    """Set frames (last axis) at or beyond each sample's length to ``value``; ``x`` is ``[batch, ..., frames]``."""
    if lengths is None:
        return x
    keep = time_mask(lengths.to(x.device), x.shape[-1])
    keep = keep.reshape(keep.shape[0], *([1] * (x.ndim - 2)), keep.shape[1])
    return x.masked_fill(~keep, value)
