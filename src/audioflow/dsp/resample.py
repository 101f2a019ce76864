"""Resampling on tensors: a windowed-sinc polyphase filter for fixed rates, and an FFT resampler for
batches where every sample has its own ratio (speed perturbation, pitch shift)."""

from __future__ import annotations

import math
from functools import lru_cache

import torch


@lru_cache(maxsize=32)
def _sinc_kernel(orig: int, new: int, width_zeros: int, rolloff: float) -> tuple[torch.Tensor, int]:
    # the windowed-sinc polyphase design of torchaudio/julius, built in float64 once per ratio
    base = min(orig, new) * rolloff
    width = math.ceil(width_zeros * orig / base)
    idx = torch.arange(-width, width + orig, dtype=torch.float64)[None, None] / orig
    t = (torch.arange(0, -new, -1, dtype=torch.float64)[:, None, None] / new + idx) * base
    t = t.clamp(-width_zeros, width_zeros)
    window = torch.cos(t * math.pi / width_zeros / 2) ** 2
    t = t * math.pi
    kernel = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / t) * window * (base / orig)
    return kernel, width


def resample(x: torch.Tensor, orig_sr: int, new_sr: int, lowpass_filter_width: int = 6,
             rolloff: float = 0.99) -> torch.Tensor:
    """Resample ``x [..., time]`` from ``orig_sr`` to ``new_sr`` (Hz) with a Hann-windowed sinc.

    The output holds ``ceil(time * new_sr / orig_sr)`` samples. ``lowpass_filter_width`` zero
    crossings on each side and a cutoff at ``rolloff`` of the lower Nyquist, as torchaudio's default.
    """
    if orig_sr == new_sr:
        return x
    g = math.gcd(int(orig_sr), int(new_sr))
    orig, new = int(orig_sr) // g, int(new_sr) // g
    shape = x.shape
    out = _polyphase(x.reshape(-1, shape[-1]), orig, new, lowpass_filter_width, rolloff)
    target = math.ceil(new * shape[-1] / orig)
    return out[:, :target].reshape(*shape[:-1], target)


def _polyphase(rows: torch.Tensor, orig: int, new: int, lowpass_filter_width: int = 6, rolloff: float = 0.99
               ) -> torch.Tensor:
    """``rows [N, time]`` resampled by ``new / orig`` (coprime): ``[N, frames * new]``, contiguous, at least
    ``ceil(time * new / orig)`` samples (the tail past that is the filter's ringing)."""
    kernel, width = _sinc_kernel(orig, new, lowpass_filter_width, rolloff)
    kernel = kernel.to(device=rows.device, dtype=rows.dtype)
    padded = torch.nn.functional.pad(rows[:, None], (width, width + orig))
    out = torch.nn.functional.conv1d(padded, kernel, stride=orig)  # [N, new, frames]
    return out.transpose(1, 2).reshape(rows.shape[0], -1)


def next_fast_len(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= ``n``: sizes the FFT libraries handle fastest."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            quotient = -(-n // p35)  # ceil
            p2 = 1 << max(0, (quotient - 1).bit_length())
            best = min(best, p2 * p35)
            p35 *= 3
        p5 *= 5
    return best


@lru_cache(maxsize=8)
def _smooth_numbers(limit: int) -> tuple[int, ...]:
    """All 2^a 3^b 5^c 7^d <= ``limit``, sorted: FFT sizes pocketfft and cuFFT handle fast."""
    out = []
    p7 = 1
    while p7 <= limit:
        p5 = p7
        while p5 <= limit:
            p3 = p5
            while p3 <= limit:
                p2 = p3
                while p2 <= limit:
                    out.append(p2)
                    p2 *= 2
                p3 *= 3
            p5 *= 5
        p7 *= 7
    return tuple(sorted(out))


def fft_sizes_for_ratio(n_in: int, ratio: float, tolerance: float = 1e-4) -> tuple[int, int]:
    """``(n, m)``: fast FFT sizes with ``n >= n_in`` and ``m / n`` within ``tolerance`` of ``ratio``.

    FFT resampling from ``n`` to ``m`` points resamples by exactly ``m / n``; searching the smooth
    numbers just above ``n_in`` finds a pair that is both fast and accurate.
    """
    import bisect

    limit = 1 << (max(n_in, round(n_in * ratio)) * 2).bit_length()
    smooth = _smooth_numbers(limit)
    start = bisect.bisect_left(smooth, n_in)
    for n in smooth[start:start + 400]:
        target = n * ratio
        k = bisect.bisect_left(smooth, target)
        for m in smooth[max(0, k - 1):k + 1]:
            if m >= 1 and abs(m / n - ratio) <= tolerance * ratio:
                return n, m
    n = next_fast_len(n_in)
    return n, max(1, round(n * ratio))


POLYPHASE_MAX = 64  # largest numerator/denominator of a ratio the polyphase path takes (kernels stay small)


def rational_ratio(ratio: float, limit: int = POLYPHASE_MAX) -> tuple[int, int] | None:
    """``(new, orig)`` with ``new / orig == ratio`` (to 1e-9) and both at most ``limit``; None otherwise.
    Speed perturbation's 0.9 / 1.1 are 10/9 and 10/11."""
    from fractions import Fraction

    frac = Fraction(float(ratio)).limit_denominator(limit)
    if frac.numerator < 1 or frac.numerator > limit or abs(frac.numerator / frac.denominator - ratio) > 1e-9 * ratio:
        return None
    return frac.numerator, frac.denominator


def resample_batch(x: torch.Tensor, ratios: torch.Tensor, lengths: torch.Tensor | None = None,
                   out_size: int | None = None, method: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Resample each row of ``x [batch, time]`` by its own ``ratios[b]`` (output/input length).

    ``method``: 'fft' resamples each row's valid part (its ``lengths[b]`` samples) band-limited in the
    frequency domain (the spectrum cut or zero-extended); rows sharing a ratio and a length share one
    batched FFT. 'polyphase' runs :func:`resample`'s windowed sinc (cutoff at 0.99 of the lower
    Nyquist, 6 zero crossings) over every row sharing a ratio at once, whatever their lengths: one
    strided convolution, a kernel cached per ratio; ratios must be small fractions (at most
    :data:`POLYPHASE_MAX` over :data:`POLYPHASE_MAX`). 'auto' (default): polyphase for the ratios that
    are such fractions (speed perturbation's 0.9 / 1.0 / 1.1), FFT for the rest. The two agree within
    5e-3 of full scale for content below 0.8 of the lower Nyquist; above, the sinc's passband bends
    towards its cutoff (torchaudio's and Lhotse's speed perturbation use the same filter).

    Returns:
        ``(y, new_lengths)`` with ``y [batch, out_size]`` zero-padded (default size: the longest),
        ``new_lengths = round(lengths * ratios)``.
    """
    if method not in ("auto", "fft", "polyphase"):
        raise ValueError(f"method must be 'auto', 'fft' or 'polyphase', got {method!r}")
    batch, size = x.shape
    lengths = torch.full((batch,), size, device=x.device) if lengths is None else lengths.to(x.device)
    ratios = ratios.to(torch.float64).reshape(-1).expand(batch).cpu()
    lengths_cpu = lengths.cpu()
    new_lengths = torch.round(lengths_cpu.double() * ratios).long().clamp(min=1)
    out_size = int(new_lengths.max()) if out_size is None else out_size
    ends = new_lengths.clamp(max=out_size).tolist()
    y = x.new_empty(batch, out_size)
    for row, end in enumerate(ends):  # each row's tail, past its new length, is zero
        y[row, end:] = 0.0
    fft_rows = []
    for ratio in ratios.unique().tolist():
        rows = (ratios == ratio).nonzero().squeeze(1).tolist()
        fraction = rational_ratio(ratio) if method != "fft" else None
        if fraction is None and method == "polyphase":
            raise ValueError(f"ratio {ratio} is not a fraction of integers up to {POLYPHASE_MAX}; use method='fft'")
        if fraction is None:
            fft_rows += rows
            continue
        if ratio == 1.0:
            part, where = x, rows
        else:
            n_in = int(lengths_cpu[rows].max())
            part, where = _polyphase(x[rows, :n_in], fraction[1], fraction[0]), range(len(rows))  # reduced fraction
        # each row copied up to its own new length: what the sinc rang past it (or padding held) stays out
        for row, j in zip(rows, where, strict=True):
            y[row, :ends[row]] = part[j, :ends[row]]
    groups: dict[tuple[int, int], list[int]] = {}
    for b in fft_rows:
        groups.setdefault((int(lengths_cpu[b]), int(new_lengths[b])), []).append(b)
    for (n_in, n_out), rows in groups.items():
        idx = torch.tensor(rows, device=x.device)
        if n_in == n_out:
            part = x[idx, :n_in]
        else:
            # zero-pad so that both FFT sizes are fast (a large prime factor costs up to 10x); the
            # padded zeros resample to zeros past n_out, and the ratio moves by under 1e-4
            n_fft, n_fft_out = fft_sizes_for_ratio(n_in, n_out / n_in)
            spec = torch.fft.rfft(x[idx, :n_in], n=n_fft, dim=-1)
            bins = n_fft_out // 2 + 1
            spec = spec[:, :bins] if spec.shape[-1] >= bins else torch.nn.functional.pad(
                spec, (0, bins - spec.shape[-1]))
            part = torch.fft.irfft(spec, n=n_fft_out, dim=-1)[:, :n_out] * (n_fft_out / n_fft)
        keep = min(n_out, out_size)
        y[idx, :keep] = part[:, :keep]
    return y, new_lengths.clamp(max=out_size).to(x.device)
