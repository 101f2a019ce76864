"""Amplitude, noise, filters, shifts, distortion and reverb: per-item parameters, one batched pass."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..dsp import butterworth_response, fft_convolve, fft_filter
from ..dsp.filters import filter_length
from ..dsp.iir import butterworth_sos, sosfilt
from ..errors import ParameterError
from .base import Transform, check_interval, check_rate, device_generator, mean_power, per_item, valid_mask


class Gain(Transform):
    """Multiply each item by a gain drawn uniformly in decibels from ``[min_gain_db, max_gain_db]``."""

    def __init__(self, min_gain_db: float = -12.0, max_gain_db: float = 12.0, p: float = 0.5,
                 seed: int | None = None) -> None:
        super().__init__(p, seed)
        check_interval("Gain", "min_gain_db", min_gain_db, "max_gain_db", max_gain_db)
        self.min_gain_db, self.max_gain_db = min_gain_db, max_gain_db

    def forward(self, x, lengths=None):
        if self.p >= 1.0 and (x.ndim == 1 or x.shape[0] == 1):
            # one item, always applied: a Python scalar times the samples as given (the batch views, the
            # draw of p and the broadcast tensor cost as much as the multiplication of 10 s of audio)
            gain_db = self.uniform(1, self.min_gain_db, self.max_gain_db, x.device)
            self.__dict__["last_gain_db"] = gain_db  # a plain attribute: nn.Module's __setattr__ costs ~1 us
            y = x * 10.0 ** (float(gain_db) / 20.0)
            return y if lengths is None else (y, lengths)
        return super().forward(x, lengths)

    def apply(self, x, lengths):
        gain_db = self.uniform(x.shape[0], self.min_gain_db, self.max_gain_db, x.device)
        self.last_gain_db = gain_db
        return x * per_item(torch.pow(10.0, gain_db / 20.0), x), lengths

    def apply_to(self, x, lengths, chosen):
        # the items left alone get 0 dB: one multiplication of the batch, no gather and scatter of rows
        gain_db = self.uniform(x.shape[0], self.min_gain_db, self.max_gain_db, x.device) * chosen
        self.last_gain_db = gain_db
        return x * per_item(torch.pow(10.0, gain_db / 20.0), x), lengths


class PolarityInversion(Transform):
    """Flip the sign of the samples."""

    def apply(self, x, lengths):
        return -x, lengths


_COLOR_EXPONENT = {"white": 0.0, "pink": 1.0, "brown": 2.0, "brownian": 2.0, "red": 2.0, "blue": -1.0,
                   "violet": -2.0}


def colored_noise(shape: tuple[int, ...], color: str | torch.Tensor, device: torch.device,
                  generator: torch.Generator | None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Gaussian noise ``shape [..., time]`` whose power falls as ``1 / f^beta`` (white 0, pink 1, brown 2,
    blue -1, violet -2); ``color`` may be a ``[batch]`` tensor of exponents. Unit mean power.

    Coloured noise is drawn directly as a shaped complex Gaussian spectrum and inverse-transformed
    once (statistically the same as filtering white noise, at half the FFTs).
    """
    beta = torch.as_tensor(_COLOR_EXPONENT[color] if isinstance(color, str) else color, device=device, dtype=dtype)
    if beta.ndim == 0 and float(beta) == 0.0:
        return torch.randn(shape, device=device, generator=generator, dtype=dtype)
    bins = shape[-1] // 2 + 1
    spec = torch.randn((*shape[:-1], bins, 2), device=device, generator=generator, dtype=dtype)
    f = torch.arange(bins, device=device, dtype=dtype).clamp(min=1.0)
    beta = beta.reshape(-1, *([1] * (len(shape) - 1))) if beta.ndim else beta
    shaped = torch.view_as_complex(spec) * f.pow(-beta / 2)
    noise = torch.fft.irfft(shaped, n=shape[-1], dim=-1)
    return noise / noise.square().mean(-1, keepdim=True).sqrt().clamp(min=1e-12)


class AddNoise(Transform):
    """Add noise at a signal-to-noise ratio drawn per item from ``[min_snr_db, max_snr_db]``.

    The SNR is measured over each item's valid samples. Noise is coloured Gaussian
    (``noise_color``: 'white', 'pink', 'brown', 'blue', 'violet', or a list to draw from per item) or,
    with ``noise`` given (a list of 1-D tensors/arrays, or of files to load at ``sample_rate``), a
    random excerpt of a random recording, looped when shorter.

    Args:
        snr_db: shortcut: one SNR in dB, or ``(min, max)``.
    """

    def __init__(self, min_snr_db: float = 3.0, max_snr_db: float = 30.0, noise_color: str | Sequence[str] = "white",
                 noise: Sequence[Any] | None = None, sample_rate: int | None = None, p: float = 0.5,
                 seed: int | None = None, snr_db: float | tuple[float, float] | None = None) -> None:
        super().__init__(p, seed)
        if snr_db is not None:
            min_snr_db, max_snr_db = (snr_db, snr_db) if isinstance(snr_db, (int, float)) else snr_db
        check_interval("AddNoise", "min_snr_db", min_snr_db, "max_snr_db", max_snr_db)
        self.min_snr_db, self.max_snr_db = float(min_snr_db), float(max_snr_db)
        colors = [noise_color] if isinstance(noise_color, str) else list(noise_color)
        for c in colors:
            if c not in _COLOR_EXPONENT:
                raise ParameterError(f"unknown noise colour {c!r}; use one of {', '.join(_COLOR_EXPONENT)}")
        self.colors = colors
        self.bank = _load_bank(noise, sample_rate) if noise is not None else None

    def make_noise(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Noise for each item, zero past its length: ``[batch, channels, time]`` generated, or
        ``[batch, 1, time]`` excerpts of the bank (the same on every channel)."""
        n, channels, size = x.shape
        gen = device_generator(self.generator, x.device)
        if self.bank is None:
            if len(self.colors) == 1:
                noise = colored_noise((n, channels, size), self.colors[0], x.device, gen, x.dtype)
            else:
                pick = self.randint(n, 0, len(self.colors), torch.device("cpu"))
                betas = torch.tensor([_COLOR_EXPONENT[self.colors[i]] for i in pick.tolist()])
                noise = colored_noise((n, channels, size), betas, x.device, gen, x.dtype)
            return noise * valid_mask(x, lengths)
        # excerpts copied straight into place (looped when a recording is shorter), only the valid part
        noise = torch.zeros(n, 1, size, dtype=x.dtype)
        picks = self.randint(n, 0, len(self.bank), torch.device("cpu")).tolist()
        for row, (i, length) in enumerate(zip(picks, lengths.tolist(), strict=True)):
            clip = self.bank[i]
            cursor = int(torch.randint(0, clip.shape[-1], (1,), generator=self.generator))
            filled = 0
            while filled < length:
                take = min(length - filled, clip.shape[-1] - cursor)
                noise[row, 0, filled:filled + take] = clip[cursor:cursor + take]
                filled, cursor = filled + take, 0
        return noise.to(x.device)

    def apply(self, x, lengths):
        snr_db = self.uniform(x.shape[0], self.min_snr_db, self.max_snr_db, x.device)
        self.last_snr_db = snr_db
        noise = self.make_noise(x, lengths)
        scale = (mean_power(x, lengths) / mean_power(noise, lengths).clamp(min=1e-20) / 10.0 ** (snr_db / 10.0)).sqrt()
        return torch.addcmul(x, noise, per_item(scale, x)), lengths


def _load_bank(noise: Sequence[Any], sample_rate: int | None) -> list[torch.Tensor]:
    bank = []
    for item in noise:
        if isinstance(item, torch.Tensor):
            bank.append(item.float().reshape(-1))
        elif hasattr(item, "shape"):
            bank.append(torch.as_tensor(item, dtype=torch.float32).reshape(-1))
        else:
            from ..io import load

            y, _ = load(item, sr=sample_rate, mono=True)
            bank.append(torch.from_numpy(y))
    if not bank or any(b.numel() == 0 for b in bank):
        raise ParameterError("noise must be a non-empty list of non-empty recordings")
    return bank


class Shift(Transform):
    """Move each item in time by a fraction of its length (``shift_unit='fraction'``), seconds or
    samples, drawn from ``[min_shift, max_shift]``; ``rollover`` wraps the samples pushed out."""

    def __init__(self, min_shift: float = -0.5, max_shift: float = 0.5, shift_unit: str = "fraction",
                 rollover: bool = True, sample_rate: int | None = None, p: float = 0.5, seed: int | None = None):
        super().__init__(p, seed)
        if shift_unit not in ("fraction", "seconds", "samples"):
            raise ParameterError(f"shift_unit must be 'fraction', 'seconds' or 'samples', got {shift_unit!r}")
        if shift_unit == "seconds" and not sample_rate:
            raise ParameterError("shift_unit='seconds' needs sample_rate")
        self.min_shift, self.max_shift, self.unit, self.rollover = min_shift, max_shift, shift_unit, rollover
        self.sample_rate = sample_rate

    def apply(self, x, lengths):
        amount = self.uniform(x.shape[0], self.min_shift, self.max_shift, x.device)
        scale = {"fraction": lengths.double(), "seconds": float(self.sample_rate or 1), "samples": 1.0}[self.unit]
        shift = torch.round(amount * scale).long()
        t = torch.arange(x.shape[-1], device=x.device)[None, :]
        source = t - shift[:, None]
        inside = (source >= 0) & (source < lengths[:, None])
        if self.rollover:
            source = torch.remainder(source, lengths.clamp(min=1)[:, None])
            inside = t < lengths[:, None]
        gathered = torch.gather(x, 2, source.clamp(0, x.shape[-1] - 1)[:, None, :].expand_as(x))
        return gathered * inside[:, None, :], lengths


class ClippingDistortion(Transform):
    """Clip each item at a percentile of its absolute values drawn from
    ``[min_percentile_threshold, max_percentile_threshold]`` (0 to 100)."""

    def __init__(self, min_percentile_threshold: float = 0.0, max_percentile_threshold: float = 40.0,
                 p: float = 0.5, seed: int | None = None) -> None:
        super().__init__(p, seed)
        check_interval("ClippingDistortion", "min_percentile_threshold", min_percentile_threshold,
                       "max_percentile_threshold", max_percentile_threshold, above=-1e-12, below=100)
        if max_percentile_threshold > 100:
            raise ParameterError(f"ClippingDistortion: max_percentile_threshold must be at most 100, got "
                                 f"{max_percentile_threshold:g}")
        self.low, self.high = min_percentile_threshold, max_percentile_threshold

    def apply(self, x, lengths):
        pct = self.uniform(x.shape[0], self.low, self.high, x.device)
        mags = x.abs().masked_fill(~valid_mask(x, lengths), float("nan")).flatten(1)
        # percentile p of the samples clipped: the threshold is the (100 - p)th quantile of |x|
        threshold = torch.stack([torch.nanquantile(m.float(), float(1 - q / 100))
                                 for m, q in zip(mags, pct, strict=True)])
        threshold = per_item(threshold, x)
        return torch.maximum(torch.minimum(x, threshold), -threshold), lengths


class TanhDistortion(Transform):
    """Soft-clip with ``tanh`` at a drive drawn from ``[min_distortion, max_distortion]`` (0 to 1),
    keeping each item's RMS (audiomentations' TanhDistortion)."""

    def __init__(self, min_distortion: float = 0.01, max_distortion: float = 0.7, p: float = 0.5,
                 seed: int | None = None) -> None:
        super().__init__(p, seed)
        check_interval("TanhDistortion", "min_distortion", min_distortion, "max_distortion", max_distortion,
                       above=-1e-12)
        self.low, self.high = min_distortion, max_distortion

    def apply(self, x, lengths):
        amount = self.uniform(x.shape[0], self.low, self.high, x.device)
        gain = per_item(10.0 ** (amount * 40.0 / 20.0), x)  # up to +40 dB of drive
        before = mean_power(x, lengths).clamp(min=1e-20)
        y = torch.tanh(x * gain)
        after = mean_power(y, lengths).clamp(min=1e-20)
        return y * per_item((before / after).sqrt(), x), lengths


Clip = ClippingDistortion
Distortion = TanhDistortion


class _Filter(Transform):
    kind = "lowpass"

    def __init__(self, sample_rate: int, min_rolloff: float = 12.0, max_rolloff: float = 24.0, p: float = 0.5,
                 seed: int | None = None) -> None:
        super().__init__(p, seed)
        sample_rate = check_rate(type(self).__name__, sample_rate)
        check_interval(type(self).__name__, "min_rolloff", min_rolloff, "max_rolloff", max_rolloff, above=0)
        self.sample_rate, self.min_rolloff, self.max_rolloff = sample_rate, min_rolloff, max_rolloff

    def cutoffs(self, n: int, device: torch.device) -> torch.Tensor:
        raise NotImplementedError

    def apply(self, x, lengths):
        n, channels, size = x.shape
        cutoff = self.cutoffs(n, x.device).to(x.dtype)
        order = self.uniform(n, self.min_rolloff, self.max_rolloff, x.device).to(x.dtype) / 6.0
        self.last_cutoff, self.last_order = cutoff, order
        n_fft = filter_length(size)
        freqs = torch.fft.rfftfreq(n_fft, 1.0 / self.sample_rate, device=x.device, dtype=x.dtype)
        response = butterworth_response(freqs, cutoff, order, self.kind)  # [n, freq]
        y = fft_filter(x.reshape(n * channels, size), response.repeat_interleave(channels, 0))
        return y.reshape(n, channels, size) * valid_mask(x, lengths), lengths


class LowPassFilter(_Filter):
    """Zero-phase Butterworth low-pass: the -3 dB cutoff drawn from ``[min_cutoff_freq, max_cutoff_freq]``
    Hz and the roll-off from ``[min_rolloff, max_rolloff]`` dB per octave, rounded to a multiple of 12
    (a Butterworth of order ``rolloff / 12`` run forward and backward, its corner placed so the pair is
    at -3 dB at the cutoff). Recursive on the CPU (:func:`audioflow.dsp.iir.sosfilt`), the same response
    by FFT elsewhere."""

    def __init__(self, sample_rate: int, min_cutoff_freq: float = 150.0, max_cutoff_freq: float = 7500.0, **kw):
        super().__init__(sample_rate, **kw)
        # the first argument is the sample rate: LowPassFilter(3000, 7000) is a 3 kHz signal cut at 7 kHz
        check_interval(type(self).__name__, "min_cutoff_freq", min_cutoff_freq, "max_cutoff_freq", max_cutoff_freq,
                       above=0, below=sample_rate / 2, why=f"the Nyquist frequency of sample_rate {sample_rate} Hz")
        # corners strictly inside (0, Nyquist): a digital Butterworth has none at either end
        self.low = max(min_cutoff_freq, 1e-3 * sample_rate)
        self.high = min(max_cutoff_freq, 0.499 * sample_rate)

    def cutoffs(self, n, device):
        return self.uniform(n, self.low, self.high, device)

    def apply(self, x, lengths):
        n, channels, size = x.shape
        cutoff = self.cutoffs(n, x.device).to(torch.float64)
        order = (self.uniform(n, self.min_rolloff, self.max_rolloff, x.device) / 12.0).round().clamp(min=1)
        self.last_cutoff, self.last_order = cutoff.to(x.dtype), (order * 2).to(x.dtype)
        rows = x.reshape(n * channels, size)
        cutoffs, orders = cutoff.cpu().numpy(), order.cpu().numpy().astype(int)
        sections = (int(orders.max()) + 1) // 2
        sos = np.tile(np.array([1.0, 0.0, 0.0, 1.0, 0.0, 0.0]), (n, sections, 1))  # pass-through sections
        for m in np.unique(orders):  # each order's design, padded to the batch's section count
            items = orders == m
            design = butterworth_sos(cutoffs[items], int(m), self.kind, self.sample_rate, squared_at_minus_3db=True)
            sos[items, : design.shape[1]] = design
        out = sosfilt(rows, np.repeat(sos, channels, 0), zero_phase=True)  # one kernel call for the batch
        out = out.reshape(n, channels, size)
        # the filter rings past an item's end into its padding: zero it again (batches of unequal items)
        return (out * valid_mask(x, lengths) if bool((lengths < size).any()) else out), lengths


class HighPassFilter(LowPassFilter):
    """Butterworth high-pass; arguments as :class:`LowPassFilter` (default cutoffs 20 to 2400 Hz)."""

    kind = "highpass"

    def __init__(self, sample_rate: int, min_cutoff_freq: float = 20.0, max_cutoff_freq: float = 2400.0, **kw):
        super().__init__(sample_rate, min_cutoff_freq, max_cutoff_freq, **kw)


class BandPassFilter(_Filter):
    """Butterworth band-pass around a centre drawn from ``[min_center_freq, max_center_freq]`` Hz, with a
    bandwidth of ``[min_bandwidth_fraction, max_bandwidth_fraction]`` times the centre; both edges at -3 dB."""

    kind = "bandpass"

    def __init__(self, sample_rate: int, min_center_freq: float = 200.0, max_center_freq: float = 4000.0,
                 min_bandwidth_fraction: float = 0.5, max_bandwidth_fraction: float = 1.99, **kw):
        super().__init__(sample_rate, **kw)
        check_interval("BandPassFilter", "min_center_freq", min_center_freq, "max_center_freq", max_center_freq,
                       above=0, below=sample_rate / 2, why=f"the Nyquist frequency of sample_rate {sample_rate} Hz")
        check_interval("BandPassFilter", "min_bandwidth_fraction", min_bandwidth_fraction, "max_bandwidth_fraction",
                       max_bandwidth_fraction, above=0)
        self.centre = (min_center_freq, max_center_freq)
        self.fraction = (min_bandwidth_fraction, max_bandwidth_fraction)

    def cutoffs(self, n, device):
        centre = self.uniform(n, *self.centre, device)
        width = centre * self.uniform(n, *self.fraction, device)
        low = (centre - width / 2).clamp(min=1.0)
        high = (centre + width / 2).clamp(max=self.sample_rate / 2 * 0.999)
        return torch.stack([low, high], -1)


class BandStopFilter(BandPassFilter):
    """Butterworth band-stop; arguments as :class:`BandPassFilter`."""

    kind = "bandstop"


def synthetic_rir(rt60: torch.Tensor, sample_rate: int, generator: torch.Generator | None,
                  device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Room impulse responses ``[batch, time]``: a direct path, then Gaussian noise decaying by 60 dB over
    each ``rt60`` (seconds): the exponential tail of a diffuse field."""
    size = max(1, int(float(rt60.max()) * sample_rate))
    t = torch.arange(size, device=device, dtype=dtype)[None, :] / sample_rate
    tail = torch.randn(rt60.shape[0], size, device=device, generator=generator, dtype=dtype)
    rir = tail * torch.exp(-6.907755 * t / rt60[:, None].to(dtype)) * 0.3
    rir[:, 0] = 1.0
    return rir / rir.square().sum(-1, keepdim=True).sqrt()


class Reverb(Transform):
    """Convolve each item with a room impulse response: one of ``rirs`` (1-D tensors/arrays, or files
    loaded at ``sample_rate``), or a synthetic one with RT60 drawn from ``[min_rt60, max_rt60]`` seconds.
    The output keeps the input's length and RMS."""

    def __init__(self, sample_rate: int, rirs: Sequence[Any] | None = None, min_rt60: float = 0.2,
                 max_rt60: float = 1.0, p: float = 0.5, seed: int | None = None) -> None:
        super().__init__(p, seed)
        sample_rate = check_rate("Reverb", sample_rate)
        check_interval("Reverb", "min_rt60", min_rt60, "max_rt60", max_rt60, above=0)
        self.sample_rate, self.min_rt60, self.max_rt60 = sample_rate, min_rt60, max_rt60
        self.rirs = _load_bank(rirs, sample_rate) if rirs is not None else None

    def apply(self, x, lengths):
        n, channels, size = x.shape
        if self.rirs is None:
            rt60 = self.uniform(n, self.min_rt60, self.max_rt60, x.device)
            rir = synthetic_rir(rt60, self.sample_rate, device_generator(self.generator, x.device), x.device, x.dtype)
        else:
            picks = self.randint(n, 0, len(self.rirs), torch.device("cpu")).tolist()
            longest = max(self.rirs[i].shape[-1] for i in picks)
            rir = torch.stack([torch.nn.functional.pad(self.rirs[i], (0, longest - self.rirs[i].shape[-1]))
                               for i in picks]).to(x.device, x.dtype)
        wet = fft_convolve(x.reshape(n * channels, size), rir.repeat_interleave(channels, 0)).reshape(n, channels, size)
        wet = wet * valid_mask(x, lengths)
        scale = (mean_power(x, lengths) / mean_power(wet, lengths).clamp(min=1e-20)).sqrt()
        return wet * per_item(scale, x), lengths
