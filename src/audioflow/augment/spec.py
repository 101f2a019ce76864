"""SpecAugment masks and batch-level mixing, on feature batches ``[batch, ..., freq, frames]``."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ParameterError
from .base import make_generator


class _Mask(nn.Module):
    axis = -1

    def __init__(self, max_width: int, num_masks: int = 1, p: float = 1.0, mask_value: float | str = 0.0,
                 max_fraction: float = 1.0, seed: int | None = None) -> None:
        super().__init__()
        if max_width < 0 or num_masks < 0:
            raise ParameterError("max_width and num_masks must be >= 0")
        self.max_width, self.num_masks, self.p, self.max_fraction = max_width, num_masks, p, max_fraction
        self.mask_value = mask_value
        self.generator = make_generator(seed)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None):
        n, size = x.shape[0], x.shape[self.axis]
        limit = torch.full((n,), size) if lengths is None or self.axis == -2 else lengths.cpu().clamp(max=size)
        keep = torch.ones(n, size, dtype=torch.bool)
        chosen = torch.rand(n, generator=self.generator) < self.p
        for _ in range(self.num_masks):
            cap = torch.minimum(torch.full((n,), self.max_width), (limit * self.max_fraction).long())
            width = torch.floor(torch.rand(n, generator=self.generator) * (cap + 1)).long()
            start = torch.floor(torch.rand(n, generator=self.generator) * (limit - width + 1).clamp(min=1)).long()
            pos = torch.arange(size)[None, :]
            hit = (pos >= start[:, None]) & (pos < (start + width)[:, None]) & chosen[:, None]
            keep &= ~hit
        keep = keep.to(x.device)
        shape = [n] + [1] * (x.ndim - 1)
        shape[self.axis] = size
        fill = x.mean(dim=tuple(range(1, x.ndim)), keepdim=True) if self.mask_value == "mean" else self.mask_value
        out = torch.where(keep.reshape(shape), x, fill if isinstance(fill, torch.Tensor) else
                          torch.tensor(fill, dtype=x.dtype, device=x.device))
        return out if lengths is None else (out, lengths)


class TimeMask(_Mask):
    """SpecAugment time masking: ``num_masks`` spans of up to ``max_width`` frames (and at most
    ``max_fraction`` of each item's valid frames) set to ``mask_value`` (a number or 'mean'), per item."""

    axis = -1


class FreqMask(_Mask):
    """SpecAugment frequency masking: ``num_masks`` bands of up to ``max_width`` bins per item."""

    axis = -2


class Mixup(nn.Module):
    """mixup (Zhang et al., 2018): each item becomes ``lam * x + (1 - lam) * x[perm]`` with ``lam`` drawn
    per item from Beta(``alpha``, ``alpha``), and so do its targets (one-hot or soft ``[batch, classes]``;
    integer class ids are one-hot encoded with ``num_classes``). Works on waveforms or features.

    Returns ``(x, targets)``, plus the mixed lengths (the longer of each pair) when ``lengths`` is given.
    """

    def __init__(self, alpha: float = 0.4, p: float = 1.0, num_classes: int | None = None,
                 seed: int | None = None) -> None:
        super().__init__()
        self.alpha, self.p, self.num_classes = alpha, p, num_classes
        self.generator = make_generator(seed)

    def forward(self, x: torch.Tensor, targets: torch.Tensor, lengths: torch.Tensor | None = None):
        n = x.shape[0]
        if targets.ndim == 1:
            if self.num_classes is None:
                raise ParameterError("integer targets need num_classes")
            targets = torch.nn.functional.one_hot(targets.long(), self.num_classes)
        targets = targets.to(x.dtype)
        perm = torch.randperm(n, generator=self.generator)
        gammas = torch._standard_gamma(torch.full((2, n), float(self.alpha), dtype=torch.float64),
                                       generator=self.generator)
        lam = (gammas[0] / gammas.sum(0)).float()
        lam = torch.where(torch.rand(n, generator=self.generator) < self.p, lam, torch.ones(n))
        self.last_lambda, self.last_perm = lam, perm
        perm, lam = perm.to(x.device), lam.to(x.device, x.dtype)
        mixed = lam.reshape(-1, *[1] * (x.ndim - 1)) * x + (1 - lam).reshape(-1, *[1] * (x.ndim - 1)) * x[perm]
        mixed_targets = lam[:, None] * targets + (1 - lam[:, None]) * targets[perm]
        if lengths is None:
            return mixed, mixed_targets
        return mixed, mixed_targets, torch.maximum(lengths, lengths[perm.to(lengths.device)])
