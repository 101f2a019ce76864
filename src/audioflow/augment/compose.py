"""Compose, OneOf, SomeOf: chains and random choices, per item."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import ParameterError
from .base import Transform
from .time import PitchShift, StretchAndShift, TimeStretch


def _fuse(transforms: Sequence[Transform]) -> list[Transform]:
    """Replace each adjacent TimeStretch + PitchShift (either order) by one StretchAndShift pass."""
    out: list[Transform] = []
    i = 0
    while i < len(transforms):
        a = transforms[i]
        b = transforms[i + 1] if i + 1 < len(transforms) else None
        pair = {type(a), type(b)}
        if pair == {TimeStretch, PitchShift}:
            stretch, shift = (a, b) if isinstance(a, TimeStretch) else (b, a)
            out.append(StretchAndShift(stretch, shift))  # type: ignore[arg-type]
            i += 2
        else:
            out.append(a)
            i += 1
    return out


class Compose(Transform):
    """Apply ``transforms`` in order (each with its own ``p``); the whole chain runs with probability
    ``p`` per item. Adjacent TimeStretch and PitchShift are fused into one phase-vocoder pass.
    ``seed`` reseeds every member, so the chain is reproducible."""

    changes_length = True

    def __init__(self, transforms: Sequence[Transform], p: float = 1.0, shuffle: bool = False,
                 seed: int | torch.Generator | None = None) -> None:
        super().__init__(p, seed)
        if seed is not None:  # every member gets its own stream, drawn from the chain's
            for t in transforms:
                t.generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,),
                                                                              generator=self.generator)))
        self.shuffle = shuffle
        self.transforms = torch.nn.ModuleList(list(transforms))
        self.fused = torch.nn.ModuleList(_fuse(list(transforms))) if not shuffle else self.transforms

    def apply(self, x, lengths):
        order = list(self.fused)
        if self.shuffle:
            order = [order[i] for i in torch.randperm(len(order), generator=self.generator).tolist()]
        for t in order:
            x, lengths = t(x, lengths)
        return x, lengths


class SomeOf(Transform):
    """Apply ``num_transforms`` of ``transforms`` (a number, or ``(min, max)`` drawn per item), chosen per
    item, in their listed order; each chosen one always applies to its items (its own ``p`` is ignored)."""

    changes_length = True

    def __init__(self, num_transforms: int | tuple[int, int], transforms: Sequence[Transform], p: float = 1.0,
                 weights: Sequence[float] | None = None, seed: int | None = None) -> None:
        super().__init__(p, seed)
        if not transforms:
            raise ParameterError("give at least one transform")
        self.transforms = torch.nn.ModuleList(list(transforms))
        low, high = (num_transforms, num_transforms) if isinstance(num_transforms, int) else num_transforms
        if not 0 <= low <= high <= len(transforms):
            raise ParameterError(f"num_transforms must be within [0, {len(transforms)}], got {num_transforms}")
        self.low, self.high = low, high
        self.weights = torch.tensor(weights if weights is not None else [1.0] * len(transforms), dtype=torch.float64)

    def choose(self, n: int) -> torch.Tensor:
        """``[n, len(transforms)]`` booleans: which transforms each item gets."""
        counts = torch.randint(self.low, self.high + 1, (n,), generator=self.generator)
        # sampling without replacement by weight: the k largest of w / Exp(1) draws (Efraimidis-Spirakis)
        keys = self.weights[None, :] / torch.empty(n, len(self.transforms), dtype=torch.float64).exponential_(
            generator=self.generator)
        ranks = keys.argsort(1, descending=True).argsort(1)
        return ranks < counts[:, None]

    def apply(self, x, lengths):
        picks = self.choose(x.shape[0]).to(x.device)
        for k, t in enumerate(self.transforms):
            x, lengths = t.apply_to(x, lengths, picks[:, k])
        return x, lengths


class OneOf(SomeOf):
    """Apply exactly one of ``transforms`` per item, chosen with ``weights`` (default equal)."""

    def __init__(self, transforms: Sequence[Transform], p: float = 1.0, weights: Sequence[float] | None = None,
                 seed: int | None = None) -> None:
        super().__init__(1, transforms, p, weights, seed)
