"""The augmentation contract: whole batches, a random draw per sample, ``lengths`` kept, seedable,
on the tensor's device."""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import nn

from ..errors import ParameterError


def make_generator(seed: int | torch.Generator | None) -> torch.Generator | None:
    """A transform's random source: a seed (its own CPU generator), a ``torch.Generator``, or None
    (torch's global RNG)."""
    if seed is None or isinstance(seed, torch.Generator):
        return seed
    return torch.Generator().manual_seed(int(seed))


def device_generator(generator: torch.Generator | None, device: torch.device) -> torch.Generator | None:
    """A generator on ``device`` derived from ``generator`` (so a CPU seed drives GPU noise too)."""
    if generator is None or generator.device == device:
        return generator
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return torch.Generator(device).manual_seed(seed)


def check_interval(owner: str, low_name: str, low: float, high_name: str, high: float, above: float | None = None,
                   below: float | None = None, why: str = "") -> None:
    """A ``[low, high]`` range of a constructor, checked when it is built (not at the first batch): finite,
    ``low <= high``, both above ``above``, and ``low`` under ``below`` (a high end past it is clamped where it
    is used, so defaults hold at any rate); ParameterError naming the parameters (``why`` says what ``below``
    is, e.g. "the Nyquist frequency of sample_rate 16000 Hz")."""
    for name, value in ((low_name, low), (high_name, high)):
        if not isinstance(value, (int, float)) or value != value or value in (float("inf"), float("-inf")):
            raise ParameterError(f"{owner}: {name} must be a finite number, got {value!r}")
        if above is not None and value <= above:
            raise ParameterError(f"{owner}: {name} must be above {above:g}, got {value:g}")
    if below is not None and low >= below:
        raise ParameterError(f"{owner}: {low_name} must be below {below:g}{f' ({why})' if why else ''}, got {low:g}")
    if low > high:
        raise ParameterError(f"{owner}: {low_name} ({low:g}) must not exceed {high_name} ({high:g})")


def check_rate(owner: str, sample_rate: Any) -> int:
    """``sample_rate`` as a positive int (Hz), or ParameterError naming ``owner``."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float)) or not sample_rate > 0 \
            or sample_rate != int(sample_rate):
        raise ParameterError(f"{owner}: sample_rate must be a positive whole number of Hz, got {sample_rate!r}")
    return int(sample_rate)


class Transform(nn.Module):
    """Base of every augmentation.

    Call with ``x`` ``[batch, time]`` or ``[batch, channels, time]`` (``[time]`` is a batch of one) and
    optional ``lengths`` (valid samples per item). Each item is transformed with probability ``p``
    and its own random parameters; all channels of an item share them. Returns ``x``, or
    ``(x, lengths)`` when ``lengths`` is given (lengths change for stretches, speed and crops).

    Args:
        p: probability of transforming each item.
        seed: an int (this transform's own ``torch.Generator``), a ``torch.Generator`` to draw from, or
            None for torch's global RNG.
    """

    changes_length = False

    def __init__(self, p: float = 0.5, seed: int | torch.Generator | None = None) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ParameterError(f"p must be in [0, 1], got {p}")
        self.p = p
        self.generator = make_generator(seed)

    # random draws: on the CPU generator (cheap, reproducible), moved to the data's device
    def uniform(self, n: int, low: float, high: float, device: torch.device) -> torch.Tensor:
        values = torch.empty(n, dtype=torch.float64).uniform_(low, high, generator=self.generator)
        return values if device.type == "cpu" else values.to(device)

    def randint(self, n: int, low: int, high: int, device: torch.device) -> torch.Tensor:
        values = torch.randint(low, high, (n,), generator=self.generator)
        return values if device.type == "cpu" else values.to(device)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None):
        squeeze = x.ndim == 1
        batch = x[None, None] if squeeze else (x[:, None] if x.ndim == 2 else x)
        n = batch.shape[0]
        if lengths is None:
            lens = _full_lengths(n, batch.shape[-1], batch.device)
        else:
            lens = lengths.to(batch.device, torch.long)
        if self.p >= 1.0:  # every item: no draw, no gather/scatter (this is most of a Gain's cost)
            out, out_lens = self.apply(batch, lens)
        else:
            chosen = torch.rand(n, generator=self.generator) < self.p
            out, out_lens = self.apply_to(batch, lens, chosen.to(batch.device))
        out = out[0, 0] if squeeze else (out[:, 0] if x.ndim == 2 else out)
        return out if lengths is None else (out, out_lens)

    def apply_to(self, x: torch.Tensor, lengths: torch.Tensor, chosen: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Transform the ``chosen`` items of ``x [batch, channels, time]``; the rest pass unchanged."""
        if not bool(chosen.any()):
            return x, lengths
        if bool(chosen.all()):
            return self.apply(x, lengths)
        idx = chosen.nonzero().squeeze(1)
        y, y_lens = self.apply(x[idx], lengths[idx])
        size = max(x.shape[-1], y.shape[-1])
        if size == x.shape[-1] == y.shape[-1]:  # one copy of the batch with the chosen rows replaced
            out = x.index_copy(0, idx, y)
        else:
            out = torch.nn.functional.pad(x, (0, size - x.shape[-1])) if size > x.shape[-1] else x.clone()
            out[idx] = torch.nn.functional.pad(y, (0, size - y.shape[-1]))
        out_lens = lengths.clone()
        out_lens[idx] = y_lens
        if y.shape[-1] < x.shape[-1] and self.changes_length:
            out = out[..., : int(out_lens.max())]
        return out, out_lens

    def apply(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Transform every item of ``x [batch, channels, time]``; subclasses implement it."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"p={self.p}"


def valid_mask(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``[batch, 1, time]`` booleans, True inside each item."""
    return (torch.arange(x.shape[-1], device=x.device)[None, :] < lengths[:, None])[:, None, :]


@functools.lru_cache(maxsize=64)
def _full_lengths(n: int, size: int, device: torch.device) -> torch.Tensor:
    """``[n]`` lengths of ``size`` (cached: the transforms never write to it; a tensor costs ~3 us to make,
    a noticeable share of a one-clip Gain)."""
    return torch.full((n,), size, device=device, dtype=torch.long)


def per_item(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Shape ``[batch]`` parameters to broadcast over ``[batch, channels, time]``."""
    return values.to(like.dtype).reshape(-1, 1, 1)


def mean_power(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean square over each item's valid samples and channels: ``[batch]``."""
    if x.device.type == "cpu":  # a norm per item's valid part: no mask, no squared copy of the batch
        norms = [torch.linalg.vector_norm(x[i, :, :length]) for i, length in enumerate(lengths.tolist())]
        total = torch.stack(norms).square() if norms else x.new_zeros(0)
    else:  # one masked pass, no per-item launches
        total = (x.square() * valid_mask(x, lengths)).sum((-1, -2))
    return total / (lengths.clamp(min=1) * x.shape[1]).to(x.dtype)


