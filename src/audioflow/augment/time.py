"""Time stretch, pitch shift, speed perturbation and cropping.

Time stretch and pitch shift share one engine: one STFT, one phase-vocoder pass, and one inverse
STFT whose frames are resynthesised on ``n_fft / 2^(semitones/12)`` points (a band-limited
resample of each frame), so no separate resampling pass. Applied together (``Compose`` fuses
them), the pair costs one round trip, not two.
"""

from __future__ import annotations

import bisect
import functools
import math
from collections.abc import Sequence

import torch

from ..dsp import get_window, istft_frames, phase_vocoder_frames, resample_batch, stft_frames
from ..errors import ParameterError
from .base import Transform, check_interval, valid_mask

_CPU_CHUNK = 2  # items per stretch pass on the CPU


def stretch_and_shift(x: torch.Tensor, lengths: torch.Tensor, rate: torch.Tensor, semitones: torch.Tensor,
                      n_fft: int = 2048, hop_length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Stretch ``x [batch, channels, time]`` by ``rate[b]`` (> 1 shorter) and shift its pitch by
    ``semitones[b]``, per item, in one STFT, one phase-vocoder pass and one resampling inverse STFT.

    Returns the new batch (zero-padded to the longest item) and the new lengths
    (``round(lengths / rate)``).
    """
    n, channels = x.shape[:2]
    factor = torch.pow(2.0, semitones.double().cpu() / 12.0)
    sizes = [frame_sizes(float(f), n_fft, hop_length) for f in factor.tolist()]
    new_lengths = torch.round(lengths.cpu().double() / rate.double().cpu()).long().clamp(min=1)
    size_out = int(new_lengths.max())
    overlap = n_fft // (hop_length or n_fft // 4)
    rate = rate.double().cpu()
    # items that share an analysis size share one pass; on the CPU a few at a time keep the STFT
    # intermediates in cache (measured ~2x per item at 32)
    step = _CPU_CHUNK if x.device.type == "cpu" else n
    passes = []
    for n_ana in sorted({a for a, _ in sizes}):
        items = [i for i, (a, _) in enumerate(sizes) if a == n_ana]
        passes += [(n_ana, items[k:k + step]) for k in range(0, len(items), step)]
    if len(passes) == 1:  # one pass holds every item, in order: its output is the batch
        y = _stretch_and_shift(x, rate, passes[0][0], [s for _, s in sizes], overlap, size_out)
    else:
        y = x.new_zeros(n, channels, size_out)
        for n_ana, idx in passes:
            y[idx] = _stretch_and_shift(x[idx], rate[idx], n_ana, [sizes[i][1] for i in idx], overlap, size_out)
    if bool((new_lengths < size_out).any()):  # shorter items end in zeros, not the vocoder's tail
        y = y * valid_mask(y, new_lengths.to(x.device))
    return y, new_lengths.to(x.device)


def _stretch_and_shift(x: torch.Tensor, rate: torch.Tensor, n_ana: int, n_syn: list[int], overlap: int,
                       size_out: int) -> torch.Tensor:
    """The engine for items sharing an analysis frame of ``n_ana`` samples: frames-major throughout (the
    vocoder's frame reads are row copies, the inverse transforms read rows in order).

    The pitch change happens in the synthesis: each frame is inverse-transformed on ``n_syn`` points (its
    spectrum cut or zero-extended: a band-limited resample of the frame) and overlap-added at
    ``n_syn / overlap``, so no separate resampling pass is needed; the vocoder's rate absorbs the length
    change the resampling makes."""
    n, channels, size = x.shape
    syn = torch.tensor(n_syn, dtype=torch.float64)
    pv_rate = rate * syn / n_ana  # output length: frames * hop * n_syn / n_ana = length / rate
    window = get_window("hann", n_ana, device=x.device, dtype=x.dtype)
    spec = stft_frames(x.reshape(n * channels, size), n_ana, n_ana // overlap, window, center=True)
    stretched = phase_vocoder_frames(spec, pv_rate.repeat_interleave(channels).float())
    y = x.new_zeros(n * channels, size_out)
    rows_syn = torch.tensor(n_syn).repeat_interleave(channels)
    # on CUDA one row per inverse transform: cuFFT plans every new input shape (~20 ms of host time) and
    # PyTorch caches the plans by shape, so row counts that change from batch to batch would plan anew
    # every time; one row at a time leaves one shape per synthesis size (see istft for the frames)
    one_row = x.device.type == "cuda"
    for size_syn in rows_syn.unique().tolist():
        rows = (rows_syn == size_syn).nonzero().squeeze(1)
        bins = size_syn // 2 + 1
        window = get_window("hann", size_syn, device=x.device, dtype=x.dtype)
        covered = min(size_out, (stretched.shape[1] - 1) * (size_syn // overlap))
        groups = [slice(r, r + 1) for r in rows.tolist()] if one_row else [rows.to(x.device)]
        for group in groups:
            part = stretched[group, :, :bins]
            if part.shape[-1] < bins:
                part = torch.nn.functional.pad(part, (0, bins - part.shape[-1]))
            out = istft_frames(part, size_syn, size_syn // overlap, window, length=covered)
            # the frames come back n_ana / size_syn times too loud: scaled back
            y[group, :covered] = out.mul_(size_syn / n_ana)
    return y.reshape(n, channels, size_out)


# FFT sizes whose prime factors are all <= 13 transform 2-8x faster than sizes with a large prime factor
# (pocketfft and MKL have short butterflies only up to there): measured on 2 cores for ~1600-2600 points
_FAST_PRIMES = (2, 3, 5, 7, 11, 13)
PITCH_TOLERANCE = 0.0013  # relative frequency error of the shift (~2 cents; a multiple-of-4 rounding's)


def _is_fast(n: int) -> bool:
    for p in _FAST_PRIMES:
        while n % p == 0:
            n //= p
    return n == 1


@functools.lru_cache(maxsize=16)
def _fast_sizes(n_fft: int, overlap: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Analysis sizes near ``n_fft`` (within 25 %) and synthesis sizes up to 4 ``n_fft`` (two octaves),
    all multiples of ``overlap`` whose FFTs are fast, analysis sizes nearest ``n_fft`` first."""
    analysis = sorted((a for a in range(overlap, int(1.25 * n_fft) + 1, overlap)
                       if a >= 0.75 * n_fft and _is_fast(a)), key=lambda a: abs(a - n_fft))
    synthesis = tuple(s for s in range(2 * overlap, 4 * n_fft + 1, overlap) if _is_fast(s))
    return tuple(analysis), synthesis


def frame_sizes(factor: float, n_fft: int = 2048, hop_length: int | None = None) -> tuple[int, int]:
    """``(n_ana, n_syn)``: analysis and synthesis frame sizes whose ratio is the pitch ``factor``.

    Both are sizes with fast FFTs, chosen within :data:`PITCH_TOLERANCE` of the asked factor (the
    analysis size nearest ``n_fft`` that reaches it); rounding the synthesis size alone to a multiple of
    the overlap, as before, hit sizes like 1636 = 4 x 409 whose transforms cost 4x a 2048-point one.
    A given ``hop_length`` fixes the analysis size to ``n_fft``.
    """
    overlap = max(1, n_fft // (hop_length or n_fft // 4))
    plain = (n_fft, max(2 * overlap, round(n_fft / factor / overlap) * overlap))
    if hop_length is not None or factor == 1.0:
        return plain
    analysis, synthesis = _fast_sizes(n_fft, overlap)
    best, best_error = plain, abs(plain[0] / plain[1] / factor - 1)
    for a in analysis:
        i = bisect.bisect_left(synthesis, a / factor)
        for s in synthesis[max(0, i - 1): i + 1]:
            error = abs(a / s / factor - 1)
            if error <= PITCH_TOLERANCE:
                return a, s
            if error < best_error:
                best, best_error = (a, s), error
    return best


class TimeStretch(Transform):
    """Change tempo without changing pitch: rate drawn from ``[min_rate, max_rate]`` (> 1 faster).

    Items get ``round(length / rate)`` samples; with ``leave_length_unchanged`` they are cut or
    zero-padded back to the input size (audiomentations' default is True; ours reports new lengths).
    """

    changes_length = True

    def __init__(self, min_rate: float = 0.8, max_rate: float = 1.25, leave_length_unchanged: bool = False,
                 n_fft: int = 2048, hop_length: int | None = None, p: float = 0.5, seed: int | None = None) -> None:
        super().__init__(p, seed)
        if not 0 < min_rate <= max_rate:
            raise ParameterError(f"need 0 < min_rate <= max_rate, got {min_rate}, {max_rate}")
        self.min_rate, self.max_rate, self.keep = min_rate, max_rate, leave_length_unchanged
        self.n_fft, self.hop_length = n_fft, hop_length

    def draw(self, n: int, device: torch.device) -> torch.Tensor:
        # uniform in log-rate, so speeding up and slowing down are equally likely
        return torch.exp(self.uniform(n, math.log(self.min_rate), math.log(self.max_rate), device))

    def apply(self, x, lengths):
        rate = self.draw(x.shape[0], x.device)
        self.last_rate = rate
        y, new_lengths = stretch_and_shift(x, lengths, rate, torch.zeros_like(rate), self.n_fft, self.hop_length)
        return _keep_size(y, new_lengths, x.shape[-1]) if self.keep else (y, new_lengths)


class PitchShift(Transform):
    """Shift pitch by ``[min_semitones, max_semitones]`` semitones without changing duration."""

    def __init__(self, min_semitones: float = -4.0, max_semitones: float = 4.0, n_fft: int = 2048,
                 hop_length: int | None = None, p: float = 0.5, seed: int | None = None) -> None:
        super().__init__(p, seed)
        check_interval("PitchShift", "min_semitones", min_semitones, "max_semitones", max_semitones)
        self.min_semitones, self.max_semitones = min_semitones, max_semitones
        self.n_fft, self.hop_length = n_fft, hop_length

    def draw(self, n: int, device: torch.device) -> torch.Tensor:
        return self.uniform(n, self.min_semitones, self.max_semitones, device)

    def apply(self, x, lengths):
        semitones = self.draw(x.shape[0], x.device)
        self.last_semitones = semitones
        y, _ = stretch_and_shift(x, lengths, torch.ones_like(semitones), semitones, self.n_fft,
                                           self.hop_length)
        return _keep_size(y, lengths, x.shape[-1])


class StretchAndShift(Transform):
    """Both at once, drawn per item as each would be, in one phase-vocoder pass (what ``Compose``
    builds from an adjacent TimeStretch and PitchShift)."""

    changes_length = True

    def __init__(self, stretch: TimeStretch, shift: PitchShift, seed: int | None = None) -> None:
        super().__init__(1.0, seed)
        self.stretch, self.shift = stretch, shift

    def apply(self, x, lengths):
        n = x.shape[0]
        use_stretch = (torch.rand(n, generator=self.stretch.generator) < self.stretch.p).to(x.device)
        use_shift = (torch.rand(n, generator=self.shift.generator) < self.shift.p).to(x.device)
        rate = torch.where(use_stretch, self.stretch.draw(n, x.device), torch.ones(n, device=x.device,
                                                                                     dtype=torch.float64))
        semitones = torch.where(use_shift, self.shift.draw(n, x.device), torch.zeros(n, device=x.device,
                                                                                       dtype=torch.float64))
        todo = use_stretch | use_shift
        if not bool(todo.any()):
            return x, lengths
        idx = todo.nonzero().squeeze(1)
        y, y_lens = stretch_and_shift(x[idx], lengths[idx], rate[idx], semitones[idx], self.stretch.n_fft,
                                      self.stretch.hop_length)
        if self.stretch.keep:
            y, y_lens = _keep_size(y, y_lens, x.shape[-1])
        size = max(int(y.shape[-1]), int(lengths[~todo].max()) if bool((~todo).any()) else 0)
        out = torch.zeros(n, x.shape[1], size, device=x.device, dtype=x.dtype)
        keep = min(size, x.shape[-1])
        out[~todo, :, :keep] = x[~todo, :, :keep]
        out[idx, :, : y.shape[-1]] = y
        out_lens = lengths.clone()
        out_lens[idx] = y_lens
        return out, out_lens


def _keep_size(y: torch.Tensor, lengths: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    if y.shape[-1] >= size:
        return y[..., :size], lengths.clamp(max=size)
    return torch.nn.functional.pad(y, (0, size - y.shape[-1])), lengths.clamp(max=size)


class SpeedPerturb(Transform):
    """Play faster or slower (tempo and pitch together, Kaldi's speed perturbation) by a factor chosen
    from ``factors`` or drawn from ``[min_rate, max_rate]``; items get ``round(length / factor)`` samples.

    Fixed factors such as 0.9 / 1.1 are small fractions (10/9, 10/11): every item sharing one is resampled
    in one strided convolution with a cached windowed-sinc kernel (Lhotse's and torchaudio's filter),
    ~10 ms for 32 clips of 4-10 s on 2 cores where per-item FFTs took ~50-150 ms. Drawn factors use the
    FFT resampler (:func:`audioflow.dsp.resample_batch`)."""

    changes_length = True

    def __init__(self, factors: Sequence[float] | None = (0.9, 1.0, 1.1), min_rate: float | None = None,
                 max_rate: float | None = None, p: float = 0.5, seed: int | None = None) -> None:
        super().__init__(p, seed)
        if min_rate is not None:
            check_interval("SpeedPerturb", "min_rate", min_rate, "max_rate", max_rate if max_rate is not None
                           else min_rate, above=0)
        elif any(not isinstance(f, (int, float)) or not 0 < f < float("inf") for f in (factors or (1.0,))):
            raise ParameterError(f"SpeedPerturb: factors must be positive numbers, got {list(factors or ())}")
        self.factors = None if min_rate is not None else torch.tensor(list(factors or (1.0,)), dtype=torch.float64)
        self.min_rate, self.max_rate = min_rate, max_rate if max_rate is not None else min_rate

    def apply(self, x, lengths):
        n, channels, size = x.shape
        if self.factors is None:
            factor = self.uniform(n, self.min_rate, self.max_rate, torch.device("cpu"))  # type: ignore[arg-type]
        else:
            factor = self.factors[self.randint(n, 0, len(self.factors), torch.device("cpu"))]
        self.last_factor = factor
        ratios = (1.0 / factor).repeat_interleave(channels)
        y, y_lens = resample_batch(x.reshape(n * channels, size), ratios, lengths.repeat_interleave(channels))
        return y.reshape(n, channels, -1), y_lens.reshape(n, channels)[:, 0]


class RandomCrop(Transform):
    """Cut a random window of ``size`` samples (or ``duration`` seconds at ``sample_rate``) from each item
    (its valid part); shorter items are kept whole. Output ``[..., size]``."""

    changes_length = True

    def __init__(self, size: int | None = None, duration: float | None = None, sample_rate: int | None = None,
                 p: float = 1.0, seed: int | None = None) -> None:
        super().__init__(p, seed)
        if size is None:
            if duration is None or sample_rate is None:
                raise ParameterError("give size (samples), or duration (seconds) and sample_rate")
            size = round(duration * sample_rate)
        self.size = int(size)

    def offsets(self, lengths: torch.Tensor) -> torch.Tensor:
        room = (lengths - self.size).clamp(min=0).cpu()
        return torch.floor(torch.rand(len(lengths), generator=self.generator, dtype=torch.float64)
                           * (room + 1).double()).long()

    def apply(self, x, lengths):
        start = self.offsets(lengths).to(x.device)
        idx = (start[:, None] + torch.arange(self.size, device=x.device)[None, :]).clamp(max=x.shape[-1] - 1)
        y = torch.gather(x, 2, idx[:, None, :].expand(x.shape[0], x.shape[1], self.size)) if x.shape[-1] else x
        new_lengths = lengths.clamp(max=self.size)
        return y * valid_mask(y, new_lengths), new_lengths


class PadOrCrop(RandomCrop):
    """Bring every item to exactly ``size`` samples: crop (``mode`` 'random', 'center' or 'start') or zero-pad."""

    def __init__(self, size: int | None = None, mode: str = "center", duration: float | None = None,
                 sample_rate: int | None = None, seed: int | None = None) -> None:
        super().__init__(size, duration, sample_rate, 1.0, seed)
        if mode not in ("random", "center", "start"):
            raise ParameterError(f"mode must be 'random', 'center' or 'start', got {mode!r}")
        self.mode = mode

    def offsets(self, lengths):
        if self.mode == "random":
            return super().offsets(lengths)
        room = (lengths - self.size).clamp(min=0).cpu()
        return room // 2 if self.mode == "center" else torch.zeros_like(room)

    def apply(self, x, lengths):
        if x.shape[-1] < self.size:
            x = torch.nn.functional.pad(x, (0, self.size - x.shape[-1]))
        return super().apply(x, lengths)
